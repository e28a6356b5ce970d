"""BitTorrent trackers: UDP (BEP 15) and HTTP announce/scrape requests (BEP 3, BEP 48).

UDP connect request (16 bytes): int64 protocol_id 0x41727101980, int32 action 0,
int32 transaction_id. Reply (16 bytes): action 0, the same transaction_id, int64
connection_id. Announce: connection_id, action 1, transaction_id, ... = 98 bytes (IPv4;
more with BEP 41 options). Scrape: action 2, 16 + 20 * n bytes.
"""

from __future__ import annotations

import struct

from ..evidence import FAMILY_PLAINTEXT, TCP, UDP, FlowEvidence, Observation
from .params import DetectParams

PROTOCOL_ID = 0x41727101980
_CONNECT = struct.pack(">QI", PROTOCOL_ID, 0)
_ACTIONS = {0: "connect", 1: "announce", 2: "scrape", 3: "error"}


def _udp_tracker(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    orig, resp = ev.orig_heads, ev.resp_heads
    connect = next((h for h in orig if len(h) == 16 and h.startswith(_CONNECT)), None)
    if connect is None:
        return []
    tid = connect[12:16]
    reasons = ["connect=1"]
    value = p.udp_tracker_value
    conn_id: bytes | None = None
    for h in resp:
        action = int.from_bytes(h[:4], "big") if len(h) >= 8 else -1
        if len(h) == 16 and action == 0 and h[4:8] == tid:
            reasons.append("connect_reply=1")
            conn_id = h[8:16]
            value = p.udp_tracker_reply_value
            break
    for h in orig:
        if len(h) < 16 or h is connect:
            continue
        action = int.from_bytes(h[8:12], "big")
        if conn_id is not None and h[:8] != conn_id:
            continue
        if action == 1 and len(h) >= 98:
            reasons.append("announce=1")
        elif action == 2 and (len(h) - 16) % 20 == 0 and len(h) > 16:
            reasons.append(f"scrape_hashes={(len(h) - 16) // 20}")
    return [Observation("udp_tracker", FAMILY_PLAINTEXT, value, "tracker", tuple(reasons))]


# bencoded keys an announce or scrape answer starts its dictionary with (BEP 3, BEP 23, BEP 48;
# keys are sorted, so the first one is one of these)
_ANSWER_KEYS = (b"8:complete", b"10:complete", b"8:interval", b"5:peers", b"12:min interval",
                b"14:failure reason", b"15:warning message", b"10:incomplete", b"10:tracker id",
                b"5:files", b"10:downloaded", b"6:peers6")


def tracker_answer(head: bytes) -> bool:
    """An HTTP answer whose body is a tracker's bencoded dictionary (the request may be
    missing from the capture: loss, or only the tracker's side tapped)."""
    if not head.startswith(b"HTTP/1."):
        return False
    body = head.find(b"\r\n\r\nd")
    return body >= 0 and head[body + 5:body + 25].startswith(_ANSWER_KEYS)


def _http_tracker(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    if not ev.orig_heads:
        if ev.resp_heads and tracker_answer(ev.resp_heads[0]):
            return [Observation("http_tracker", FAMILY_PLAINTEXT, p.http_tracker_value, "tracker", ("answer=1",))]
        return []
    head = ev.orig_heads[0]
    if not head.startswith(b"GET "):
        if ev.resp_heads and tracker_answer(ev.resp_heads[0]):
            return [Observation("http_tracker", FAMILY_PLAINTEXT, p.http_tracker_value, "tracker", ("answer=1",))]
        return []
    line = head.split(b"\r\n", 1)[0]
    q = line.find(b"?")
    if q < 0 or b"info_hash=" not in line[q:]:
        return []
    path = line[4:q]
    if path.endswith(b"announce") or b"/announce" in path:
        kind = "announce"
    elif path.endswith(b"scrape") or b"/scrape" in path:
        kind = "scrape"
    else:
        return []  # e.g. /webseed?info_hash= (BT web seed), not a tracker
    reasons = [f"request={kind}"]
    query = line[q + 1:]
    for key in (b"peer_id=", b"compact=", b"event=", b"supportcrypto=", b"requirecrypto="):
        if key in query:
            reasons.append(f"{key[:-1].decode()}=1")
    pid = query.find(b"peer_id=")
    if pid >= 0:
        prefix = query[pid + 8:pid + 16]
        if prefix[:1] == b"-" and prefix[7:8] == b"-" and prefix[1:7].isalnum():
            reasons.append(f"client={prefix.decode('ascii')}")
    return [Observation("http_tracker", FAMILY_PLAINTEXT, p.http_tracker_value, "tracker",
                        tuple(reasons))]


def tracker(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    """udp_tracker for BEP 15 exchanges, http_tracker for GET /announce?info_hash=..."""
    if ev.key.proto == UDP:
        return _udp_tracker(ev, p)
    if ev.key.proto == TCP:
        return _http_tracker(ev, p)
    return []
