"""Other protocols: DNS (UDP and TCP), QUIC long headers and STUN, recognised by structure.

Negative evidence, like TLS, SSH and HTTP in randomness.py: a flow whose own evidence shows
one of these is not P2P, whatever its host or peer-cache context says (docs/architecture.md).
Each check is a bounded parse of one head; a head the capture cut short (snaplen) is
accepted when everything captured parses.

- DNS (RFC 1035 4.1): 12-byte header (a valid opcode, Z zero, one question, sane counts),
  then the question's name as length-prefixed labels ending in a zero byte, a type and a
  class (IN, CH, HS, NONE or ANY; mDNS may set the top bit). Over TCP the message follows a
  2-byte length that matches the segment (RFC 1035 4.2.2).
- QUIC (RFC 9000 17.2, RFC 9369): a long header, first byte 11xxxxxx, a known version
  (1, 2, the IETF drafts 29-34, Google's Q046/Q050, or 0 for version negotiation), then
  destination and source connection ids of at most 20 bytes each.
- STUN (RFC 5389 6): first two bits zero, the magic cookie 0x2112A442 at offset 4, a
  message length that is a multiple of 4 (and matches the datagram when it is whole).
"""

from __future__ import annotations

import struct

from ..evidence import FAMILY_NEGATIVE, TCP, UDP, FlowEvidence, Observation
from .params import DetectParams

_DNS_OPCODES = frozenset({0, 1, 2, 4, 5, 6})  # query, iquery, status, notify, update, DSO
_DNS_CLASSES = frozenset({1, 3, 4, 254, 255})
_LDH = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_QUIC_VERSIONS = frozenset(
    {0x00000001, 0x6B3343CF, 0x00000000, 0x51303436, 0x51303530} | {0xFF000000 + d for d in range(29, 35)}
)
_STUN_COOKIE = b"\x21\x12\xa4\x42"


def dns_message(buf: bytes, whole: bool, lenient_names: bool = False) -> str | None:
    """"query" or "response" when `buf` is a DNS message (or, not `whole`, the captured start
    of one) with one question; None otherwise."""
    if len(buf) < 12:
        return None
    _id, flags, qd, an, ns, ar = struct.unpack_from(">HHHHHH", buf)
    if (flags >> 11) & 0xF not in _DNS_OPCODES or flags & 0x0040 or qd != 1 or max(an, ns, ar) > 256:
        return None
    off, labels, name_len = 12, 0, 0
    while True:
        if off >= len(buf):
            return _kind(flags) if not whole and labels else None
        n = buf[off]
        if n == 0:
            off += 1
            break
        if n >= 0xC0:  # a compression pointer ends the name
            off += 2
            break
        if n > 63:
            return None
        label = buf[off + 1:off + 1 + n]
        if not lenient_names and not all(b in _LDH for b in label):
            return None
        if lenient_names and any(b < 0x20 or b == 0x7F for b in label):
            return None
        labels += 1
        name_len += n + 1
        if name_len > 255:
            return None
        off += 1 + n
    if off + 4 > len(buf):
        return _kind(flags) if not whole and off <= len(buf) else None
    _qtype, qclass = struct.unpack_from(">HH", buf, off)
    if qclass & 0x7FFF not in _DNS_CLASSES:
        return None
    return _kind(flags)


def _kind(flags: int) -> str:
    return "response" if flags & 0x8000 else "query"


def quic_long_header(buf: bytes) -> str | None:
    """The QUIC version name when `buf` starts with a long header of a known version."""
    if len(buf) < 7 or not buf[0] & 0x80:
        return None
    version = int.from_bytes(buf[1:5], "big")
    if version not in _QUIC_VERSIONS or (version != 0 and not buf[0] & 0x40):
        return None  # the fixed bit is set in every long header but version negotiation
    dcil = buf[5]
    if dcil > 20 or (len(buf) > 6 + dcil and buf[6 + dcil] > 20):
        return None
    return "negotiation" if version == 0 else f"0x{version:08x}"


def stun_message(buf: bytes, size: int | None) -> bool:
    if len(buf) < 20 or buf[0] & 0xC0 or buf[4:8] != _STUN_COOKIE:
        return False
    length = int.from_bytes(buf[2:4], "big")
    return length % 4 == 0 and (size is None or length + 20 == size)


def _sizes_of(ev: FlowEvidence, orig: bool) -> list[int]:
    return [abs(s) for s in ev.sizes if (s > 0) == orig]


def other_protocols(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    """dns_like, quic_like, stun_like: the flow's own evidence shows a non-P2P protocol."""
    out: list[Observation] = []
    on_dns_port = ev.key.resp_p in p.dns_ports or ev.key.orig_p in p.dns_ports
    dns: list[str] = []
    quic: list[str] = []
    stun: list[str] = []
    for direction, heads, orig in (("orig", ev.orig_heads, True), ("resp", ev.resp_heads, False)):
        sizes = _sizes_of(ev, orig)
        for i, head in enumerate(heads):
            size = sizes[i] if i < len(sizes) else None
            whole = size is None or len(head) >= size
            if ev.key.proto == UDP:
                kind = dns_message(head, whole, lenient_names=on_dns_port)
                if kind:
                    dns.append(f"dns_{direction}={kind}")
                version = quic_long_header(head)
                if version:
                    quic.append(f"quic_{direction}={version}")
                if stun_message(head, size if whole else None):
                    stun.append(f"stun_{direction}=1")
            elif ev.key.proto == TCP and len(head) >= 14:
                length = int.from_bytes(head[:2], "big")
                if size is not None and length + 2 < size:
                    continue  # several messages in one segment happen, a length that short does not
                kind = dns_message(head[2:], whole and length + 2 == size, lenient_names=on_dns_port)
                if kind:
                    dns.append(f"dns_{direction}={kind}")
    for feature, protocol, reasons in (("dns_like", "dns", dns), ("quic_like", "quic", quic), ("stun_like", "stun", stun)):
        if reasons:
            out.append(Observation(feature, FAMILY_NEGATIVE, 1.0, protocol, tuple(dict.fromkeys(reasons))))
    return out
