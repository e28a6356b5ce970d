"""Verdicts: what the engine decides, per flow and per host. Immutable, JSON-ready."""

from __future__ import annotations

from dataclasses import dataclass

from .evidence import FlowKey

P2P = "p2p_likely"
NORMAL = "normal_likely"
UNKNOWN = "unknown"
FLOW_LABELS = (P2P, NORMAL, UNKNOWN)
NO_PROTOCOL = "unknown"  # FlowVerdict.protocol when nothing was recognised (never None)

P2P_HOST = "p2p_host"
NORMAL_HOST = "normal_host"
HOST_LABELS = (P2P_HOST, NORMAL_HOST, UNKNOWN)


@dataclass(frozen=True, slots=True)
class FlowVerdict:
    key: FlowKey
    uid: str
    community_id: str
    ts: float  # flow start
    label: str  # p2p_likely | normal_likely | unknown
    # the P2P protocol (bt_mse, bt_plain, utp, dht, tracker, lsd), or the other protocol the
    # flow's own evidence shows (tls, ssh, http, dns, quic, stun), or "unknown"; never None
    protocol: str
    probability: float  # combined P = sigmoid(alpha*S_flow + (1-alpha)*S_host)
    flow_probability: float  # sigmoid(S_flow)
    host_score: float  # S_host of the local host at decision time
    decided_at_packet: int  # payload packets seen when decided (1-based; 0 = none)
    decided_at: float  # timestamp of that packet (or of the flow's end)
    reasons: tuple[str, ...]  # "name=value"
    families: tuple[str, ...]  # evidence families that contributed: own, then context
    score_path: tuple[tuple[int, float], ...] = ()  # (payload packets, P) at each prefix scored
    families_own: tuple[str, ...] = ()  # families from the flow's own evidence
    families_context: tuple[str, ...] = ()  # host_context / peer_cache

    def to_dict(self) -> dict:
        k = self.key
        return {
            "type": "flow",
            "ts": round(self.ts, 6),
            "uid": self.uid,
            "community_id": self.community_id,
            "proto": k.proto,
            "orig_h": k.orig_h,
            "orig_p": k.orig_p,
            "resp_h": k.resp_h,
            "resp_p": k.resp_p,
            "label": self.label,
            "protocol": self.protocol,
            "probability": round(self.probability, 4),
            "flow_probability": round(self.flow_probability, 4),
            "host_score": round(self.host_score, 4),
            "decided_at_packet": self.decided_at_packet,
            "decided_at": round(self.decided_at, 6),
            "reasons": list(self.reasons),
            "families": list(self.families),
            "families_own": list(self.families_own),
            "families_context": list(self.families_context),
            "score_path": [[n, round(p, 4)] for n, p in self.score_path],
        }


@dataclass(frozen=True, slots=True)
class HostVerdict:
    host: str
    ts: float  # time of the verdict (last evidence considered)
    label: str  # p2p_host | normal_host | unknown
    score: float  # S_host (log-odds)
    probability: float
    reasons: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "type": "host",
            "ts": round(self.ts, 6),
            "host": self.host,
            "label": self.label,
            "score": round(self.score, 4),
            "probability": round(self.probability, 4),
            "reasons": list(self.reasons),
        }
