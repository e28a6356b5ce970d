"""uTP v1 (BEP 29) header shape and the coherence of an opening exchange.

Header (20 bytes, big-endian): type<<4|version, extension, connection_id u16,
timestamp_us u32, timestamp_diff_us u32, wnd_size u32, seq_nr u16, ack_nr u16.
Types: DATA 0, FIN 1, STATE 2, RESET 3, SYN 4.

Connection ids (BEP 29): the initiator picks recv_id, sends the SYN with
connection_id = recv_id and everything after it with recv_id + 1; the responder sends
with connection_id = recv_id and its STATE reply acks the SYN (ack_nr = SYN seq_nr).
A random 20-byte datagram rarely parses, but structured ones do (a 20-byte DNS query
with ID 0x41xx and no NS/AR records looks like a SYN), so one packet is weak evidence and
well-known non-P2P ports are skipped as nDPI does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..evidence import FAMILY_PLAINTEXT, UDP, FlowEvidence, Observation
from .bt_plain import BT_HANDSHAKE_PREFIX
from .params import DetectParams
from .randomness import random_verdict

ST_DATA, ST_FIN, ST_STATE, ST_RESET, ST_SYN = 0, 1, 2, 3, 4
_HEADER = struct.Struct(">BBHIIIHH")
_HEADER_LEN = 20
_TYPE_NAMES = ("data", "fin", "state", "reset", "syn")


@dataclass(frozen=True, slots=True)
class UtpHeader:
    type: int
    conn_id: int
    ts: int
    ts_diff: int
    wnd: int
    seq: int
    ack: int
    payload_off: int  # where the payload starts, after the extension chain


def parse_utp(head: bytes, p: DetectParams) -> UtpHeader | None:
    """The uTP v1 header of one datagram head, or None if it is not one."""
    if len(head) < _HEADER_LEN:
        return None
    tv, ext, cid, ts, tsd, wnd, seq, ack = _HEADER.unpack_from(head)
    typ = tv >> 4
    if tv & 0x0F != 1 or typ > ST_SYN or ext > 2 or wnd > p.utp_max_wnd or ts == 0:
        return None
    off, count = _HEADER_LEN, 0
    while ext != 0:
        count += 1
        if count > p.utp_max_extensions or off + 2 > len(head):
            # too many extensions; or the chain runs past the head: the datagram is cut
            # by the head limit or malformed, either way we cannot vouch for it
            return None
        nxt, length = head[off], head[off + 1]
        if ext == 1 and (length < 4 or length % 4):
            return None  # selective ACK bitmask: at least 32 bits, in multiples of 32
        if nxt > 2:
            return None
        ext, off = nxt, off + 2 + length
    if off > len(head):
        return None
    has_payload = off < len(head)
    if typ == ST_SYN and (tsd != 0 or has_payload):
        return None  # a SYN has no delay sample yet and carries no data
    if wnd == 0 and has_payload:
        return None  # nDPI: a zero window only on bare headers
    return UtpHeader(typ, cid, ts, tsd, wnd, seq, ack, off)


def _excluded_port(ev: FlowEvidence, p: DetectParams) -> bool:
    ports = (ev.key.orig_p, ev.key.resp_p)
    return min(ports) < p.utp_min_port or any(x in p.utp_excluded_ports for x in ports)


def _u16(x: int) -> int:
    return x & 0xFFFF


def _coherence(orig: list[UtpHeader], resp: list[UtpHeader]) -> list[str]:
    """Reasons showing both directions belong to one uTP connection (empty: not shown)."""
    if not orig or not resp:
        return []
    syn = next((h for h in orig if h.type == ST_SYN), None)
    if syn is not None:
        recv_id = syn.conn_id
        if not all(h.conn_id == recv_id for h in resp):
            return []
        reasons = ["syn=1", "resp_conn_id=syn"]
        if any(h.ack == syn.seq for h in resp):
            reasons.append("ack_matches_syn=1")
        later = [h for h in orig if h.type != ST_SYN]
        if later and all(h.conn_id == _u16(recv_id + 1) for h in later):
            reasons.append("orig_send_id=recv_id+1")
        # at least one confirmation beyond the shared connection id
        return reasons if len(reasons) > 2 else []
    # SYN not among the heads: ids must still pair up as recv_id / recv_id + 1
    o_ids = {h.conn_id for h in orig}
    r_ids = {h.conn_id for h in resp}
    if len(o_ids) != 1 or len(r_ids) != 1:
        return []
    o, r = next(iter(o_ids)), next(iter(r_ids))
    if _u16(o - r) != 1 and _u16(r - o) != 1:
        return []
    # and one side must acknowledge (close to) what the other sent
    acked = any(_u16(rh.ack - oh.seq) <= 1 or _u16(oh.seq - rh.ack) <= 1
                for rh in resp for oh in orig)
    acked = acked or any(_u16(oh.ack - rh.seq) <= 1 or _u16(rh.seq - oh.ack) <= 1
                         for rh in resp for oh in orig)
    return ["syn=0", "conn_id_pair=1", "ack_progress=1"] if acked else []


def _one_way(orig: list[UtpHeader]) -> list[str]:
    """Reasons showing the initiator's side alone is one uTP connection (empty: not shown):
    a SYN with connection id c, then packets sent with c + 1 (BEP 29) whose sequence
    numbers follow the SYN's."""
    if len(orig) < 2 or orig[0].type != ST_SYN:
        return []
    syn, later = orig[0], orig[1:]
    if not all(h.conn_id == _u16(syn.conn_id + 1) and h.type != ST_SYN for h in later):
        return []
    if not _seq_progress(orig):
        return []
    return ["syn=1", "orig_send_id=recv_id+1", "seq_progress=1", "one_sided=1"]


def _seq_progress(headers: list[UtpHeader]) -> bool:
    seqs = [h.seq for h in headers if h.type in (ST_SYN, ST_DATA)]
    return len(seqs) >= 2 and all(_u16(b - a) in (0, 1) for a, b in zip(seqs, seqs[1:]))


def utp(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    """utp_header (weak) when every head parses as uTP; utp_coherent when both directions
    form one connection."""
    if ev.key.proto != UDP or not ev.orig_heads or _excluded_port(ev, p):
        return []
    orig = [parse_utp(h, p) for h in ev.orig_heads]
    resp = [parse_utp(h, p) for h in ev.resp_heads]
    if any(h is None for h in orig) or any(h is None for h in resp):
        return []  # every datagram of a uTP flow carries a uTP header
    o = [h for h in orig if h is not None]
    r = [h for h in resp if h is not None]
    types = "+".join(_TYPE_NAMES[h.type] for h in o)
    reasons = [f"orig_types={types}", f"pkts={len(o) + len(r)}"]
    for head, h in zip(ev.orig_heads + ev.resp_heads, o + r):
        payload = head[h.payload_off:]
        if h.type != ST_DATA or not payload:
            continue
        if payload.startswith(BT_HANDSHAKE_PREFIX):
            reasons.append("payload_bt_handshake=1")
        elif random_verdict(payload, p).random:
            reasons.append("payload_random=1")  # uTP carrying MSE: header clear, rest random
        break
    if _seq_progress(o):
        reasons.append("seq_progress=1")
    out = [Observation("utp_header", FAMILY_PLAINTEXT, p.utp_header_value, "utp", tuple(reasons))]
    coherent = _coherence(o, r)
    value = p.utp_coherent_value
    if not coherent and ev.one_sided == "orig":
        coherent, value = _one_way(o), p.utp_one_way_value
    if coherent:
        out.append(Observation("utp_coherent", FAMILY_PLAINTEXT, value, "utp",
                               tuple(coherent + [r_ for r_ in reasons if r_.startswith("payload_")])))
    return out
