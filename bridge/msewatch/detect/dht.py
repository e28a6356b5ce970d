"""BitTorrent Mainline DHT (KRPC, BEP 5) over UDP, by bounded prefix and marker checks.

No bencode parse: KRPC messages are small dicts with sorted keys, so real queries start
"d1:ad2:id20:" and responses "d1:rd2:id20:"; BEP 42 nodes put "ip" first ("d2:ip"), errors
start "d1:el". Clients that do not sort keys may start with "d1:t" / "d1:v" / "d1:y" / "d1:q";
for those (and the BEP 42 / error starts) we also want a KRPC marker in the same head.
"""

from __future__ import annotations

from ..evidence import FAMILY_PLAINTEXT, UDP, FlowEvidence, Observation
from .params import DetectParams

_STRONG_PREFIXES = (b"d1:ad2:id20:", b"d1:rd2:id20:")
_WEAK_PREFIXES = (b"d2:ip", b"d1:el", b"d1:t", b"d1:v", b"d1:y", b"d1:q", b"d1:a", b"d1:r")
_MARKERS = (b"1:y1:q", b"1:y1:r", b"1:y1:e", b"2:id20:", b"1:rd2:id20:", b"1:ad2:id20:")
# query method names as they appear after "1:q"; the reason gets the bare name
_METHODS = (
    (b"4:ping", "ping"),
    (b"9:find_node", "find_node"),
    (b"9:get_peers", "get_peers"),
    (b"13:announce_peer", "announce_peer"),
    (b"17:sample_infohashes", "sample_infohashes"),
    (b"3:get", "get"),
    (b"3:put", "put"),
)


def krpc_kind(head: bytes) -> str | None:
    """'q', 'r', 'e' (or '?' when the y key is beyond the head) if head is KRPC, else None."""
    if not head.startswith(b"d1:") and not head.startswith(b"d2:ip"):
        return None
    strong = head.startswith(_STRONG_PREFIXES)
    if not strong:
        if not head.startswith(_WEAK_PREFIXES):
            return None
        if not any(m in head for m in _MARKERS):
            return None
    for marker, kind in ((b"1:y1:q", "q"), (b"1:y1:r", "r"), (b"1:y1:e", "e")):
        if marker in head:
            return kind
    if head.startswith(b"d1:ad2:id20:"):
        return "q"
    if head.startswith(b"d1:el"):
        return "e"
    if b"1:rd2:id20:" in head:
        return "r"
    return "?"  # the y key sits after a long nodes/values string, cut off by the head limit


def _method(head: bytes) -> str | None:
    pos = head.find(b"1:q")
    while pos != -1:
        rest = head[pos + 3:pos + 3 + 22]
        for token, name in _METHODS:
            if rest.startswith(token):
                return name
        pos = head.find(b"1:q", pos + 3)
    return None


def dht_krpc(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    """dht_krpc when any of the first datagrams of a UDP flow is a KRPC message."""
    if ev.key.proto != UDP:
        return []
    dirs: list[str] = []
    kinds: set[str] = set()
    methods: list[str] = []
    bep42 = False
    for direction, heads in (("orig", ev.orig_heads), ("resp", ev.resp_heads)):
        hit = False
        for head in heads:
            kind = krpc_kind(head)
            if kind is None:
                continue
            hit = True
            kinds.add(kind)
            bep42 = bep42 or head.startswith(b"d2:ip")
            m = _method(head)
            if m and m not in methods:
                methods.append(m)
        if hit:
            dirs.append(direction)
    if not dirs:
        return []
    both = len(dirs) == 2
    reasons = [f"dir={'both' if both else dirs[0]}", f"y={'+'.join(sorted(kinds))}"]
    reasons += [f"q={m}" for m in methods]
    if bep42:
        reasons.append("bep42_ip=1")
    value = p.dht_both_ways_value if both else p.dht_one_way_value
    return [Observation("dht_krpc", FAMILY_PLAINTEXT, value, "dht", tuple(reasons))]
