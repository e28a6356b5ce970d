"""Does a stream start look uniformly random, and if not, what does it look like?

The positive test is the GFW fully-encrypted rule (Wu et al., USENIX Security 2023):
popcount band (Ex1), printable prefix/share/run exemptions (Ex2-Ex4) and protocol
fingerprints (Ex5). It fires on MSE but equally on Shadowsocks/obfs4, so it is one
family of evidence, never a verdict (protocol None).

The negative observations name starts that are clearly TLS, SSH or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..evidence import (
    FAMILY_NEGATIVE,
    FAMILY_RANDOM,
    TCP,
    FlowEvidence,
    Observation,
)
from .params import DetectParams

_PRINTABLE = bytes(range(0x20, 0x7F))
_PRINTABLE_MAP = bytes(0x50 if 0x20 <= b <= 0x7E else 0x2E for b in range(256))
_HTTP_METHODS = (
    b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"CONNECT ",
    b"PATCH ", b"TRACE ",
)


@dataclass(frozen=True, slots=True)
class RandomVerdict:
    """Why a head is or is not random-looking; `exemption` is None when it is random."""

    random: bool
    popcount: float
    exemption: str | None


def popcount_per_byte(data: bytes) -> float:
    """Mean number of set bits per byte (4.0 for uniform random bytes)."""
    if not data:
        return 0.0
    return int.from_bytes(data, "big").bit_count() / len(data)


def printable_count(data: bytes) -> int:
    # translate(None, delete) removes the printable bytes in C; what is left is the rest
    return len(data) - len(data.translate(None, _PRINTABLE))


def longest_printable_run_exceeds(data: bytes, run: int) -> bool:
    # map printable -> "P", rest -> "." in C, then a substring test: no per-byte Python loop
    return b"P" * (run + 1) in data.translate(_PRINTABLE_MAP)


def known_start(head: bytes) -> str | None:
    """Ex5 and friends: the protocol a stream start is recognisably, or None."""
    if len(head) >= 3 and head[0] in (0x14, 0x15, 0x16, 0x17) and head[1] == 0x03 and head[2] <= 0x04:
        # TLS record: content type 20..23, legacy version 3.0..3.4 (GFW Ex5 uses 0x16/0x17)
        return "tls" if head[0] == 0x16 else "tls_record"
    if head.startswith(b"SSH-"):
        return "ssh"
    if head.startswith(b"HTTP/"):
        return "http_response"
    if head.startswith(_HTTP_METHODS):
        return "http_request"
    return None


def random_verdict(head: bytes, p: DetectParams) -> RandomVerdict:
    """Apply Ex1-Ex5 to one payload head."""
    pc = popcount_per_byte(head)
    if len(head) < p.min_random_len:
        return RandomVerdict(False, pc, "too_short")
    if known_start(head) is not None:
        return RandomVerdict(False, pc, "ex5_fingerprint")
    if not (p.popcount_low < pc < p.popcount_high):
        return RandomVerdict(False, pc, "ex1_popcount")
    n = p.printable_prefix_len
    if len(head) >= n and printable_count(head[:n]) == n:
        return RandomVerdict(False, pc, "ex2_printable_prefix")
    if printable_count(head) > p.printable_share * len(head):
        return RandomVerdict(False, pc, "ex3_printable_share")
    if longest_printable_run_exceeds(head, p.printable_run):
        return RandomVerdict(False, pc, "ex4_printable_run")
    return RandomVerdict(True, pc, None)


def fully_encrypted_first_packet(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    """The client's first TCP payload passes the GFW fully-encrypted rule.

    TCP only, as in the GFW and nDPI: UDP protocols (QUIC, WireGuard, uTP payloads) carry
    random bytes behind plaintext headers and are judged by their own detectors.
    """
    if ev.key.proto != TCP or not ev.orig_heads:
        return []
    head = ev.orig_heads[0]
    v = random_verdict(head, p)
    if not v.random:
        return []
    value = 1.0 if len(head) >= p.random_full_len else 0.5
    reasons = [f"popcount={v.popcount:.2f}", f"head_len={len(head)}"]
    if ev.resp_heads:
        rv = random_verdict(ev.resp_heads[0], p)
        reasons.append(f"resp_random={int(rv.random)}")
    if not ev.handshake:
        value *= p.midstream_factor
        reasons.append("start_seen=0")
    return [Observation("fully_encrypted", FAMILY_RANDOM, value, None, tuple(reasons))]


def _is_tracker_request(head: bytes) -> bool:
    # HTTP tracker announces/scrapes belong to the tracker detector (positive evidence)
    line = head.split(b"\r\n", 1)[0]
    return line.startswith(b"GET ") and b"info_hash=" in line


def non_p2p_start(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    """Negative evidence: the stream opens like TLS, SSH or HTTP (either direction).

    SSH servers speak first, so the responder's head is checked too.
    """
    if ev.key.proto != TCP:
        return []
    out: list[Observation] = []
    seen: set[str] = set()
    for direction, heads in (("orig", ev.orig_heads), ("resp", ev.resp_heads)):
        if not heads:
            continue
        head = heads[0]
        kind = known_start(head)
        if kind is None:
            continue
        if kind.startswith("tls"):
            feature = "tls_like"
        elif kind == "ssh":
            feature = "ssh_like"
        else:
            if kind == "http_request" and _is_tracker_request(head):
                continue
            feature = "http_like"
        if feature in seen:
            continue
        seen.add(feature)
        reasons = (f"dir={direction}", f"start={kind}", f"first_bytes={head[:3].hex()}")
        out.append(Observation(feature, FAMILY_NEGATIVE, 1.0, None, reasons))
    return out
