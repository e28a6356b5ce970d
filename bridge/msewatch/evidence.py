"""The evidence contract (v1): what is collected per connection, identically by the
Zeek scripts and by the offline pcap extractor. docs/evidence.md is its prose twin.

Everything here is immutable; the engine builds a `FlowEvidence` snapshot from its
mutable per-flow state whenever it scores a flow, and detectors only ever see snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVIDENCE_VERSION = 1

TCP = "tcp"
UDP = "udp"


@dataclass(frozen=True, slots=True)
class FlowKey:
    """Who talks to whom. orig = the TCP SYN sender, or the first UDP sender."""

    proto: str  # "tcp" | "udp"
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int


@dataclass(frozen=True, slots=True)
class FlowEvidence:
    """Bounded early-connection evidence of one flow (or a prefix of it).

    sizes:  signed payload sizes of the first N payload-bearing packets
            (+ orig->resp, - resp->orig).
    times:  seconds since `ts` of each packet in `sizes` (same length).
    bursts: signed accumulated payload bytes of the first K direction runs.
            The last burst may still be growing while the flow is open.
    orig_heads / resp_heads: the first <= H bytes of the first payload packet of
            that direction (TCP: one entry at most; UDP: the first few datagrams).
    Counters cover the whole flow so far, also after the budget was spent.
    """

    key: FlowKey
    uid: str
    community_id: str
    ts: float
    sizes: tuple[int, ...]
    times: tuple[float, ...]
    bursts: tuple[int, ...]
    orig_heads: tuple[bytes, ...]
    resp_heads: tuple[bytes, ...]
    orig_pkts: int = 0
    resp_pkts: int = 0
    orig_bytes: int = 0  # payload bytes
    resp_bytes: int = 0
    duration: float = 0.0
    # TCP only: SYN from orig and SYN/ACK from resp seen (the flow start was observed)
    handshake: bool = False
    # TCP only: FIN or RST seen from either side
    closed: bool = False
    # True once the evidence budget is spent or the flow has ended: nothing more will come.
    complete: bool = False

    @property
    def proto(self) -> str:
        return self.key.proto

    def prefix(self, n: int) -> "FlowEvidence":
        """The evidence as it stood after the first `n` payload packets.

        Used to find the earliest packet at which a decision could be made; counters
        are approximated from the recorded sizes (they are not used by detectors).
        """
        if n >= len(self.sizes):
            return self
        sizes = self.sizes[:n]
        return FlowEvidence(
            key=self.key,
            uid=self.uid,
            community_id=self.community_id,
            ts=self.ts,
            sizes=sizes,
            times=self.times[:n],
            bursts=bursts_of(sizes),
            orig_heads=self.orig_heads if any(s > 0 for s in sizes) else (),
            resp_heads=self.resp_heads if any(s < 0 for s in sizes) else (),
            orig_pkts=sum(1 for s in sizes if s > 0),
            resp_pkts=sum(1 for s in sizes if s < 0),
            orig_bytes=sum(s for s in sizes if s > 0),
            resp_bytes=-sum(s for s in sizes if s < 0),
            duration=self.times[n - 1] if n else 0.0,
            handshake=self.handshake,
            closed=False,
            complete=False,
        )


def bursts_of(sizes: tuple[int, ...] | list[int], limit: int = 1 << 30) -> tuple[int, ...]:
    """Signed direction runs of a signed size sequence (SPID's accumulated direction bytes)."""
    out: list[int] = []
    for s in sizes:
        if out and (s > 0) == (out[-1] > 0):
            out[-1] += s
        elif len(out) < limit:
            out.append(s)
        else:
            break
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Observation:
    """One detector finding: a feature value with the reasons behind it.

    feature: the weight name in the scoring config (scoring.weights.<feature>).
    family:  independent evidence family; encrypted flows need >= 2 distinct families.
    protocol: the protocol this finding points at (bt_mse, bt_plain, utp, dht, tracker,
              lsd), or None for generic/negative evidence.
    value:   strength in [0, 1]; the contribution to the score is weight * value.
    """

    feature: str
    family: str
    value: float
    protocol: str | None
    reasons: tuple[str, ...] = field(default=())


# Evidence families (for the ">= 2 independent families" rule on encrypted flows)
FAMILY_SHAPE = "handshake_shape"  # burst/size shape of the opening exchange
FAMILY_RANDOM = "randomness"  # first payloads look uniformly random
FAMILY_PLAINTEXT = "plaintext_signature"  # literal protocol bytes (definitive on their own)
FAMILY_HOST = "host_context"  # the host's behaviour (fan-out, discovery nearby)
FAMILY_PEER = "peer_cache"  # endpoint seen before in a recognised P2P flow
FAMILY_NEGATIVE = "negative"  # evidence for a known non-P2P protocol

PROTOCOLS = ("bt_mse", "bt_plain", "utp", "dht", "tracker", "lsd")
