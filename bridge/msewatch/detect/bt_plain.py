"""Plain BitTorrent at the stream start: the BEP 3 handshake and peer-wire messages.

Handshake (68 bytes): 0x13 "BitTorrent protocol", reserved 8, info_hash 20, peer_id 20.
Reserved bits: reserved[5] & 0x10 = BEP 10 extension protocol, reserved[7] & 0x01 = DHT
(BEP 5 port message), reserved[7] & 0x04 = BEP 6 fast extension.

Peer-wire messages are <len u32 BE><id u8><payload>. We only hold the head of the FIRST
payload packet per direction, so messages are visible only when they ride in the same
packet as the handshake, or when capture started mid-stream.
"""

from __future__ import annotations

from ..evidence import FAMILY_PLAINTEXT, TCP, FlowEvidence, Observation
from .params import DetectParams

BT_HANDSHAKE_PREFIX = b"\x13BitTorrent protocol"
HANDSHAKE_LEN = 68

_MSG_NAMES = {
    0: "choke", 1: "unchoke", 2: "interested", 3: "not_interested", 4: "have",
    5: "bitfield", 6: "request", 7: "piece", 8: "cancel", 9: "port",
    13: "suggest", 14: "have_all", 15: "have_none", 16: "reject", 17: "allowed_fast",
    20: "extended",
}
# exact length prefixes (id byte included) of the fixed-size messages (BEP 3, BEP 5, BEP 6)
_FIXED_LEN = {0: 1, 1: 1, 2: 1, 3: 1, 4: 5, 6: 13, 8: 13, 9: 3, 13: 5, 14: 1, 15: 1, 16: 13, 17: 5}
# minimum length prefixes of the variable-size ones: bitfield >= 1 byte, piece header 9,
# extended = id + ext id
_MIN_LEN = {5: 2, 7: 9, 20: 2}
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def walk_peerwire(buf: bytes, off: int, p: DetectParams) -> tuple[list[str], bool]:
    """Message names found from `off`, and False if an implausible message was met.

    A message cut off by the end of the head still counts (heads are bounded).
    """
    names: list[str] = []
    while off + 4 <= len(buf) and len(names) < p.peerwire_max_msgs:
        length = int.from_bytes(buf[off:off + 4], "big")
        if length == 0:
            names.append("keepalive")
            off += 4
            continue
        if off + 4 >= len(buf):
            break
        mid = buf[off + 4]
        if mid not in _MSG_NAMES or length > p.peerwire_max_len:
            return names, False
        fixed = _FIXED_LEN.get(mid)
        if fixed is not None and length != fixed:
            return names, False
        if fixed is None and length < _MIN_LEN[mid]:
            return names, False
        name = _MSG_NAMES[mid]
        if mid == 20 and off + 6 < len(buf) and buf[off + 5] == 0:
            # BEP 10 extension handshake: ext id 0 and a bencoded dict with a string key
            # ("d1:m...", or "d12:complete_ago..." since keys are sorted)
            body = buf[off + 6:off + 8]
            if body[:1] != b"d" or (len(body) > 1 and not body[1:2].isdigit()):
                return names, False
            name = "ext_handshake"
        names.append(name)
        off += 4 + length
    return names, True


def _client(peer_id: bytes) -> str:
    """client=-TR3000- for readable peer_id prefixes, peer_id_prefix=<hex> otherwise."""
    prefix = peer_id[:8]
    if prefix and all(b in _SAFE for b in prefix):
        return f"client={prefix.decode('ascii')}"
    return f"peer_id_prefix={prefix.hex()}"


def _handshake_reasons(head: bytes, p: DetectParams) -> list[str]:
    reasons: list[str] = []
    if len(head) >= 28:
        reserved = head[20:28]
        reasons.append(f"ext_bep10={int(bool(reserved[5] & 0x10))}")
        reasons.append(f"dht={int(bool(reserved[7] & 0x01))}")
        reasons.append(f"fast={int(bool(reserved[7] & 0x04))}")
    if len(head) >= 48 and p.report_info_hash:
        reasons.append(f"info_hash={head[28:48].hex()}")
    if len(head) >= HANDSHAKE_LEN:
        reasons.append(_client(head[48:68]))
    return reasons


def bt_plain(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    """bt_handshake / bt_peerwire from the first payload head of each direction."""
    if ev.key.proto != TCP:
        return []
    hs_dirs: list[str] = []
    hs_reasons: list[str] = []
    wire_reasons: list[str] = []
    wire_value = 0.0
    for direction, heads in (("orig", ev.orig_heads), ("resp", ev.resp_heads)):
        if not heads:
            continue
        head = heads[0]
        if head.startswith(BT_HANDSHAKE_PREFIX):
            hs_dirs.append(direction)
            r = _handshake_reasons(head, p)
            if direction == "resp":
                # the info_hash must match A's; say so instead of repeating it
                mine = [x for x in r if x.startswith("info_hash=")]
                theirs = [x for x in hs_reasons if x.startswith("info_hash=")]
                r = [f"resp_{x}" for x in r if not x.startswith("info_hash=")]
                if mine and theirs:
                    r.append(f"info_hash_match={int(mine == theirs)}")
                elif mine:
                    r.append(mine[0])
            hs_reasons += r
            if len(head) > HANDSHAKE_LEN:
                names, ok = walk_peerwire(head, HANDSHAKE_LEN, p)
                if names and ok:
                    wire_value = 1.0
                    wire_reasons.append(f"{direction}_msgs={'+'.join(names)}")
        elif not ev.handshake:
            # capture began mid-stream: the first head we hold may be plain peer wire
            names, ok = walk_peerwire(head, 0, p)
            real = [n for n in names if n != "keepalive"]
            if ok and len(real) >= p.peerwire_min_msgs_alone:
                wire_value = max(wire_value, p.peerwire_alone_value)
                wire_reasons.append(f"{direction}_msgs={'+'.join(names)}")
    if wire_value > 0 and not hs_dirs:
        wire_reasons.append("start_seen=0")
    out: list[Observation] = []
    if hs_dirs:
        d = "both" if len(hs_dirs) == 2 else hs_dirs[0]
        out.append(Observation("bt_handshake", FAMILY_PLAINTEXT, 1.0, "bt_plain",
                               (f"dir={d}", *hs_reasons)))
    if wire_value > 0:
        out.append(Observation("bt_peerwire", FAMILY_PLAINTEXT, wire_value, "bt_plain",
                               tuple(wire_reasons)))
    return out
