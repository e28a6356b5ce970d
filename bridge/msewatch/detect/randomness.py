"""Does a stream start look uniformly random, and if not, what does it look like?

The positive test is the GFW fully-encrypted rule (Wu et al., USENIX Security 2023):
popcount band (Ex1), printable prefix/share/run exemptions (Ex2-Ex4) and protocol
fingerprints (Ex5). It fires on MSE but equally on Shadowsocks/obfs4, so it is one
family of evidence, never a verdict (protocol None).

The negative observations name starts that are clearly TLS, SSH or HTTP.
"""

from __future__ import annotations

import math
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


def popcount_band(p: DetectParams, n: int, truncated: bool) -> tuple[float, float]:
    """Ex1's band; for a head the capture cut to n bytes, widened to popcount_sigmas
    standard deviations of uniform bytes at that length (never narrower than the band)."""
    lo, hi = p.popcount_low, p.popcount_high
    if truncated and n > 0:
        mid = (lo + hi) / 2
        half = max((hi - lo) / 2, p.popcount_sigmas * math.sqrt(2.0 / n))
        lo, hi = mid - half, mid + half
    return lo, hi


_Q_PRINTABLE = 95 / 256  # share of printable bytes among uniform ones


def printable_limit(p: DetectParams, n: int, truncated: bool) -> float:
    """Ex3's limit on printable bytes; for a head the capture cut to n bytes, raised to
    popcount_sigmas standard deviations above what uniform bytes show (95/256 of them are
    printable: at 30 bytes 11 +- 2.6, so a flat 50 % would exempt 7 % of random heads)."""
    limit = p.printable_share * n
    if truncated:
        limit = max(limit, n * _Q_PRINTABLE + p.popcount_sigmas * math.sqrt(n * _Q_PRINTABLE * (1 - _Q_PRINTABLE)))
    return limit


def random_verdict(head: bytes, p: DetectParams, truncated: bool = False, prefix_exempt: bool = True) -> RandomVerdict:
    """Apply Ex1-Ex5 to one payload head.

    truncated: the capture cut the packet to this head (snaplen), so Ex1 and Ex3 are judged
    on the captured bytes with the length-aware limits of `popcount_band`/`printable_limit`. prefix_exempt=False drops Ex2 (six
    printable bytes at the start): the GFW needs it to be cheap on the first bytes, a
    detector holding the whole head has Ex3/Ex4 for text and may ignore a prefix that a
    uniformly random key shows in 0.26 % of cases."""
    pc = popcount_per_byte(head)
    if len(head) < p.min_random_len:
        return RandomVerdict(False, pc, "too_short")
    if known_start(head) is not None:
        return RandomVerdict(False, pc, "ex5_fingerprint")
    lo, hi = popcount_band(p, len(head), truncated)
    if not (lo < pc < hi):
        return RandomVerdict(False, pc, "ex1_popcount")
    n = p.printable_prefix_len
    if prefix_exempt and len(head) >= n and printable_count(head[:n]) == n:
        return RandomVerdict(False, pc, "ex2_printable_prefix")
    if printable_count(head) > printable_limit(p, len(head), truncated):
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
    cut_o, cut_r = ev.head_captured(p.head_bytes)
    v = random_verdict(head, p, truncated=cut_o is not None)
    if not v.random:
        return []
    value = 1.0 if len(head) >= p.random_full_len else 0.5
    reasons = [f"popcount={v.popcount:.2f}", f"head_len={len(head)}"]
    if cut_o is not None:
        reasons.append(f"head_captured={cut_o}")
    if ev.resp_heads:
        rv = random_verdict(ev.resp_heads[0], p, truncated=cut_r is not None)
        reasons.append(f"resp_random={int(rv.random)}")
    if ev.one_sided:
        reasons.append("one_sided=1")
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
    from .tracker import tracker_answer

    tracker = (bool(ev.orig_heads) and _is_tracker_request(ev.orig_heads[0])) or (
        bool(ev.resp_heads) and tracker_answer(ev.resp_heads[0]))
    for direction, heads in (("orig", ev.orig_heads), ("resp", ev.resp_heads)):
        if not heads:
            continue
        head = heads[0]
        kind = known_start(head)
        if kind is None:
            continue
        if kind.startswith("tls"):
            feature, protocol = "tls_like", "tls"
        elif kind == "ssh":
            feature, protocol = "ssh_like", "ssh"
        else:
            if tracker:
                continue  # a tracker announce and its HTTP answer: the tracker detector's
            feature, protocol = "http_like", "http"
        if feature in seen:
            continue
        seen.add(feature)
        reasons = (f"dir={direction}", f"start={kind}", f"first_bytes={head[:3].hex()}")
        out.append(Observation(feature, FAMILY_NEGATIVE, 1.0, protocol, reasons))
    return out
