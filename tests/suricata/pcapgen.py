"""Write small synthetic pcaps (Ethernet/IPv4, TCP with a full handshake, UDP) for rule unit tests.

Stdlib only. Checksums are correct, so Suricata's stream engine accepts every segment. These
pcaps pin down each rule's shape; the real-traffic tests over tests/data/corpus/ say whether the
rules fire on what real clients send.
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + payload


def _l4_csum(src: str, dst: str, proto: int, seg: bytes) -> int:
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, len(seg))
    return _csum(pseudo + seg)


@dataclass
class PcapWriter:
    packets: list[tuple[float, bytes]] = field(default_factory=list)
    ts: float = 1_700_000_000.0
    ident: int = 1

    def _frame(self, src: str, dst: str, proto: int, seg: bytes) -> None:
        eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
        self.ts += 0.001
        self.ident += 1
        self.packets.append((self.ts, eth + _ipv4(src, dst, proto, seg, self.ident)))

    def udp(self, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
        seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        c = _l4_csum(src, dst, 17, seg) or 0xFFFF
        self._frame(src, dst, 17, seg[:6] + struct.pack("!H", c) + seg[8:])

    def _tcp(self, src, sport, dst, dport, seq, ack, flags, payload=b"") -> None:
        seg = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                          65535, 0, 0) + payload
        c = _l4_csum(src, dst, 6, seg)
        self._frame(src, dst, 6, seg[:16] + struct.pack("!H", c) + seg[18:])

    def tcp_session(self, client: tuple[str, int], server: tuple[str, int],
                    exchanges: list[tuple[int, bytes]]) -> None:
        """Handshake, then each (direction, payload) with +1 = client->server, then FIN both ways."""
        (ch, cp), (sh, sp) = client, server
        cseq, sseq = 1000, 5000
        self._tcp(ch, cp, sh, sp, cseq, 0, 0x02)
        self._tcp(sh, sp, ch, cp, sseq, cseq + 1, 0x12)
        cseq += 1
        sseq += 1
        self._tcp(ch, cp, sh, sp, cseq, sseq, 0x10)
        for direction, payload in exchanges:
            for off in range(0, len(payload), 1448):
                chunk = payload[off:off + 1448]
                if direction > 0:
                    self._tcp(ch, cp, sh, sp, cseq, sseq, 0x18, chunk)
                    cseq += len(chunk)
                    self._tcp(sh, sp, ch, cp, sseq, cseq, 0x10)
                else:
                    self._tcp(sh, sp, ch, cp, sseq, cseq, 0x18, chunk)
                    sseq += len(chunk)
                    self._tcp(ch, cp, sh, sp, cseq, sseq, 0x10)
        self._tcp(ch, cp, sh, sp, cseq, sseq, 0x11)
        self._tcp(sh, sp, ch, cp, sseq, cseq + 1, 0x11)
        self._tcp(ch, cp, sh, sp, cseq + 1, sseq + 1, 0x10)

    def write(self, path) -> None:
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            for ts, frame in self.packets:
                sec = int(ts)
                f.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)))
                f.write(frame)
