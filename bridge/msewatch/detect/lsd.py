"""Local Service Discovery (BEP 14): HTTP-over-UDP multicast announces.

    BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: <port>\r\n
    Infohash: <40 hex>\r\n[cookie: ...]\r\n\r\n\r\n
sent to 239.192.152.143:6771 or [ff15::efc0:988f]:6771.
"""

from __future__ import annotations

import ipaddress

from ..evidence import FAMILY_PLAINTEXT, UDP, FlowEvidence, Observation
from .params import DetectParams

LSD_PORT = 6771
LSD_GROUPS = (ipaddress.ip_address("239.192.152.143"), ipaddress.ip_address("ff15::efc0:988f"))
_START = b"BT-SEARCH * HTTP/1.1\r\n"
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _to_lsd_group(host: str, port: int) -> bool:
    try:
        return port == LSD_PORT and ipaddress.ip_address(host) in LSD_GROUPS
    except ValueError:
        return False


def lsd(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    """lsd when the first datagram is a BT-SEARCH with Infohash and Port headers."""
    if ev.key.proto != UDP or not ev.orig_heads:
        return []
    head = ev.orig_heads[0]
    if not head.startswith(_START):
        return []
    lower = head.lower()
    multicast = _to_lsd_group(ev.key.resp_h, ev.key.resp_p)
    reasons: list[str] = [f"dst={'lsd_group' if multicast else 'other'}"]
    if b"\r\ninfohash:" not in lower or b"\r\nport:" not in lower:
        # a capture cut short (snaplen) may hold only the request line and Host: to the
        # LSD group the request line is enough; elsewhere the headers must be there
        cut = ev.head_captured(p.head_bytes)[0]
        if cut is None or not multicast:
            return []
        reasons.append(f"head_captured={cut}")
    start = lower.find(b"\r\ninfohash:") + len(b"\r\ninfohash:")
    value_ = head[start:start + 42].strip()[:40]
    if len(value_) == 40 and all(b in _HEX for b in value_):
        reasons.append(f"infohash={value_.decode('ascii').lower()}")
    value = p.lsd_value if multicast else p.lsd_unicast_value
    return [Observation("lsd", FAMILY_PLAINTEXT, value, "lsd", tuple(reasons))]
