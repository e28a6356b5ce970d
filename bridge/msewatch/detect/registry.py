"""The detector table and `run_detectors` (msewatch.detect re-exports them; see its docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..evidence import TCP, UDP, FlowEvidence, Observation
from .bt_plain import bt_plain
from .dht import dht_krpc
from .lsd import lsd
from .mse import mse_handshake
from .other import other_protocols
from .params import DetectParams
from .randomness import fully_encrypted_first_packet, non_p2p_start
from .tracker import tracker
from .utp import utp

DetectorFn = Callable[[FlowEvidence, DetectParams], list[Observation]]


@dataclass(frozen=True, slots=True)
class Detector:
    """One detector, the transport protocols it applies to, and the features it emits."""

    name: str
    protos: frozenset[str]
    features: tuple[str, ...]
    run: DetectorFn


_T, _U = frozenset({TCP}), frozenset({UDP})

DETECTORS: tuple[Detector, ...] = (
    # TCP: prefix checks first, then popcount, then the burst shape (which re-checks heads)
    Detector("non_p2p_start", _T, ("tls_like", "ssh_like", "http_like"), non_p2p_start),
    Detector("other_protocols", _T | _U, ("dns_like", "quic_like", "stun_like"), other_protocols),
    Detector("bt_plain", _T, ("bt_handshake", "bt_peerwire"), bt_plain),
    Detector("tracker", _T | _U, ("http_tracker", "udp_tracker"), tracker),
    Detector("fully_encrypted", _T, ("fully_encrypted",), fully_encrypted_first_packet),
    Detector("mse", _T, ("mse_partial", "mse_handshake"), mse_handshake),
    # UDP: literal prefixes first, then the uTP header walk
    Detector("lsd", _U, ("lsd",), lsd),
    Detector("dht", _U, ("dht_krpc",), dht_krpc),
    Detector("utp", _U, ("utp_header", "utp_coherent"), utp),
)

FEATURES: tuple[str, ...] = tuple(f for d in DETECTORS for f in d.features)


# Detectors that read sizes/bursts (the rest read only the heads, the key, `handshake`, the
# sides seen and the size of each head's own packet, so their result is the same for every
# prefix that holds the same directions).
SHAPE_DETECTORS = frozenset({"mse"})


def run_detectors(ev: FlowEvidence, p: DetectParams, shape: bool | None = None) -> list[Observation]:
    """Observations for one evidence snapshot, from the detectors for its protocol.

    shape=None runs all of them; True only those in SHAPE_DETECTORS; False only the others
    (what a caller may reuse across prefixes with the same heads)."""
    proto = ev.key.proto
    out: list[Observation] = []
    for d in DETECTORS:
        if proto in d.protos and (shape is None or (d.name in SHAPE_DETECTORS) == shape):
            out.extend(d.run(ev, p))
    return out


__all__ = ["DETECTORS", "FEATURES", "SHAPE_DETECTORS", "DetectParams", "Detector", "DetectorFn", "run_detectors"]
