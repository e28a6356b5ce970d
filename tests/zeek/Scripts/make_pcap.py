#!/usr/bin/env python3
"""Write a tiny, fully known pcap for the Zeek tests (stdlib only).

Three flows whose evidence can be derived by hand:
  * TCP 10.0.0.1:51413 -> 10.0.0.2:6881, handshake, an MSE-shaped exchange
    (96+pad each way, then smaller packets), FIN from both sides;
  * UDP 10.0.0.1:40000 -> 10.0.0.3:6881, DHT-like bencoded queries (5 from orig,
    1 reply) to exercise the per-direction UDP head budget;
  * TCP 10.0.0.1:40001 -> 10.0.0.4:6881, SYN answered by RST (no payload).

`FLOWS` describes them for check_evidence.py; `python3 make_pcap.py OUT.pcap`
writes the capture.

`python3 make_pcap.py --flip OUT.pcap` writes FLIP_FLOW alone instead: a TCP
connection whose first packet seen is the SYN/ACK; Zeek takes the SYN/ACK sender
as originator and flips the connection at the client's first data packet.
"""

from __future__ import annotations

import random
import struct
import sys

BASE_TS = 1_700_000_000.0

_rng = random.Random(7)


def _random_bytes(n: int) -> bytes:
    return bytes(_rng.getrandbits(8) for _ in range(n))


# (dt, from_orig, tcp_flags or None for UDP, payload)
MSE_FLOW = {
    "proto": "tcp",
    "orig": ("10.0.0.1", 51413),
    "resp": ("10.0.0.2", 6881),
    "start": BASE_TS + 1.0,
    "packets": [
        (0.000, True, "S", b""),
        (0.010, False, "SA", b""),
        (0.020, True, "A", b""),
        (0.030, True, "PA", _random_bytes(96 + 200)),  # Ya + PadA
        (0.040, False, "PA", _random_bytes(96 + 100)),  # Yb + PadB
        (0.050, True, "PA", _random_bytes(300)),  # req1/req2^req3/VC/crypto_provide/...
        (0.060, False, "PA", _random_bytes(30)),  # VC, crypto_select, PadD
        (0.070, True, "PA", _random_bytes(40)),
        (0.075, True, "PA", _random_bytes(50)),
        (0.080, False, "A", b""),
        (0.090, True, "FA", b""),
        (0.100, False, "FA", b""),
        (0.110, True, "A", b""),
    ],
}

DHT_QUERY = b"d1:ad2:id20:" + b"A" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe"
DHT_REPLY = b"d1:rd2:id20:" + b"B" * 20 + b"e1:t2:aa1:y1:re"

DHT_FLOW = {
    "proto": "udp",
    "orig": ("10.0.0.1", 40000),
    "resp": ("10.0.0.3", 6881),
    "start": BASE_TS + 2.0,
    "packets": [
        (0.000, True, None, DHT_QUERY),
        (0.020, False, None, DHT_REPLY),
        (0.040, True, None, DHT_QUERY.replace(b"aa", b"ab")),
        (0.060, True, None, DHT_QUERY.replace(b"aa", b"ac")),
        (0.080, True, None, DHT_QUERY.replace(b"aa", b"ad")),
        (0.100, True, None, DHT_QUERY.replace(b"aa", b"ae")),
    ],
}

REFUSED_FLOW = {
    "proto": "tcp",
    "orig": ("10.0.0.1", 40001),
    "resp": ("10.0.0.4", 6881),
    "start": BASE_TS + 3.0,
    "packets": [
        (0.000, True, "S", b""),
        (0.001, False, "RA", b""),
    ],
}

FLOWS = [MSE_FLOW, DHT_FLOW, REFUSED_FLOW]

# "orig" is the client, which Zeek makes the originator once it has flipped the connection.
FLIP_FLOW = {
    "proto": "tcp",
    "orig": ("10.0.1.1", 50000),
    "resp": ("10.0.1.2", 7000),
    "start": BASE_TS + 1.0,
    "packets": [
        (0.000, False, "SA", b""),
        (0.010, True, "PA", b"C" * 100),  # the flip happens at this packet
        (0.020, False, "PA", b"S" * 200),
        (0.030, True, "PA", b"c" * 50),
        (0.040, True, "FA", b""),
        (0.050, False, "FA", b""),
        (0.060, True, "A", b""),
    ],
}

_TCP_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip4(addr: str) -> bytes:
    return bytes(int(part) for part in addr.split("."))


def _packet(src, dst, proto: int, l4: bytes, ident: int) -> bytes:
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident, 0x4000, 64, proto, 0, _ip4(src), _ip4(dst)
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + l4


def _l4_checksum(src, dst, proto: int, segment: bytes) -> int:
    pseudo = _ip4(src) + _ip4(dst) + struct.pack("!BBH", 0, proto, len(segment))
    return _checksum(pseudo + segment)


def frames(flow) -> list[tuple[float, bytes]]:
    """(timestamp, frame) of every packet of `flow`."""
    out = []
    seq = {True: 1000, False: 5000}
    for i, (dt, from_orig, flags, payload) in enumerate(flow["packets"]):
        (src, sport), (dst, dport) = (
            (flow["orig"], flow["resp"]) if from_orig else (flow["resp"], flow["orig"])
        )
        if flow["proto"] == "udp":
            hdr = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
            seg = hdr + payload
            seg = seg[:6] + struct.pack("!H", _l4_checksum(src, dst, 17, seg) or 0xFFFF) + seg[8:]
            proto = 17
        else:
            bits = sum(_TCP_FLAG_BITS[f] for f in flags)
            ack = seq[not from_orig] if "A" in flags else 0
            hdr = struct.pack("!HHIIBBHHH", sport, dport, seq[from_orig], ack, 5 << 4, bits, 65535, 0, 0)
            seg = hdr + payload
            seg = seg[:16] + struct.pack("!H", _l4_checksum(src, dst, 6, seg)) + seg[18:]
            seq[from_orig] += len(payload) + (1 if bits & 0x03 else 0)
            proto = 6
        out.append((flow["start"] + dt, _packet(src, dst, proto, seg, i + 1)))
    return out


def write_pcap(path: str, flows=None) -> None:
    packets = sorted((ts, frame) for flow in (flows or FLOWS) for ts, frame in frames(flow))
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, frame in packets:
            sec = int(ts)
            usec = int(round((ts - sec) * 1_000_000))
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
            f.write(frame)


if __name__ == "__main__":
    args = sys.argv[1:]
    flip = "--flip" in args
    args = [a for a in args if a != "--flip"]
    write_pcap(args[0] if args else "tiny.pcap", [FLIP_FLOW] if flip else None)
