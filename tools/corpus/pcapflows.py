"""Read a classic pcap (Ethernet, IPv4/IPv6) back into TCP/UDP flows. Stdlib only.

orig is the sender of the first SYN (without ACK) of a TCP connection, or of the first packet
seen when the SYN is not in the capture; for UDP, the first sender. A TCP flow keyed by the same
5-tuple that starts again with a fresh SYN after a FIN/RST is the same labelled tuple; the labels
file is keyed by 5-tuple, so that is enough.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass


@dataclass
class Flow:
    proto: str
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    first_ts: float
    packets: int = 0
    payload_bytes: int = 0
    resp_payload_bytes: int = 0
    first_payloads: list = None     # [(direction +1/-1, bytes)] of the first few payload packets

    @property
    def key(self):
        return (self.proto, self.orig_h, self.orig_p, self.resp_h, self.resp_p)


def iter_packets(path: str):
    """Yield (ts, proto, src, sport, dst, dport, tcp_flags or None, payload)."""
    with open(path, "rb") as f:
        gh = f.read(24)
        if len(gh) < 24:
            return
        magic = gh[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            e = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            e = ">"
        else:
            raise ValueError(f"{path}: not a classic pcap file")
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack(e + "I", gh[20:24])[0]
        if linktype != 1:
            raise ValueError(f"{path}: linktype {linktype}, expected Ethernet (1)")
        while True:
            rh = f.read(16)
            if len(rh) < 16:
                return
            sec, frac, incl, _orig = struct.unpack(e + "IIII", rh)
            data = f.read(incl)
            ts = sec + frac / (1e9 if nano else 1e6)
            pkt = parse_ethernet(data)
            if pkt is not None:
                yield (ts, *pkt)


def parse_ethernet(data: bytes):
    if len(data) < 14:
        return None
    etype = struct.unpack(">H", data[12:14])[0]
    off = 14
    while etype == 0x8100 and len(data) >= off + 4:
        etype = struct.unpack(">H", data[off + 2:off + 4])[0]
        off += 4
    ip = data[off:]
    if etype == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        frag = struct.unpack(">H", ip[6:8])[0]
        if frag & 0x1FFF:           # non-first fragment: no transport header
            return None
        proto = ip[9]
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        l4 = ip[ihl:total]
    elif etype == 0x86DD and len(ip) >= 40:
        proto = ip[6]
        src, dst = str(ipaddress.IPv6Address(ip[8:24])), str(ipaddress.IPv6Address(ip[24:40]))
        l4 = ip[40:40 + struct.unpack(">H", ip[4:6])[0]]
    else:
        return None
    if proto == 6 and len(l4) >= 20:
        sport, dport = struct.unpack(">HH", l4[:4])
        doff = (l4[12] >> 4) * 4
        return "tcp", src, sport, dst, dport, l4[13], l4[doff:]
    if proto == 17 and len(l4) >= 8:
        sport, dport = struct.unpack(">HH", l4[:4])
        return "udp", src, sport, dst, dport, None, l4[8:]
    return None


def read_flows(path: str, keep_payloads: int = 4) -> list[Flow]:
    flows: dict[tuple, Flow] = {}
    for ts, proto, src, sport, dst, dport, flags, payload in iter_packets(path):
        a, b = (src, sport), (dst, dport)
        k = (proto,) + (min(a, b), max(a, b))
        fl = flows.get(k)
        syn_only = flags is not None and flags & 0x02 and not flags & 0x10
        if fl is None:
            fl = Flow(proto, src, sport, dst, dport, ts, first_payloads=[])
            flows[k] = fl
        elif syn_only and (fl.orig_h, fl.orig_p) != a and fl.packets and not fl.payload_bytes:
            # The first packet we saw was a stray answer; the SYN sender is the originator.
            fl.orig_h, fl.orig_p, fl.resp_h, fl.resp_p = src, sport, dst, dport
        fl.packets += 1
        fl.payload_bytes += len(payload)
        if (src, sport) != (fl.orig_h, fl.orig_p):
            fl.resp_payload_bytes += len(payload)
        if payload and len(fl.first_payloads) < keep_payloads:
            fl.first_payloads.append((1 if (src, sport) == (fl.orig_h, fl.orig_p) else -1, payload))
    return sorted(flows.values(), key=lambda f: f.first_ts)


def refine_protocol(protocol: str, fl: Flow) -> str:
    """A peer-wire connection whose responder never sent a byte is an attempt, not a
    handshake: class `bt_attempt`, kept apart because no detector may label an encrypted
    flow from the initiator's bytes alone. Decided from the capture, not a detector."""
    if protocol in ("bt_mse", "bt_plain") and fl.proto == "tcp" and fl.resp_payload_bytes == 0:
        return "bt_attempt"
    return protocol


def hosts_in_flows(hosts: list[list], rows: list[list]) -> list[list]:
    """Only hosts that appear in a flow of their capture can be judged."""
    seen = {(r[0], r[2]) for r in rows} | {(r[0], r[4]) for r in rows}
    return [h for h in hosts if (h[0], h[1]) in seen]
