"""Frame and capture builders for the pcap source tests (dpkt packing plus a few hand-built bytes
where dpkt doesn't fill in lengths or can't write the variant: big-endian files, garbage)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import dpkt

SRC4 = bytes([10, 0, 0, 1])
DST4 = bytes([192, 0, 2, 7])
SRC6 = bytes.fromhex("20010db8000000000000000000000001")
DST6 = bytes.fromhex("20010db80000000000000000000000ff")
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")

SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04


def tcp(sport: int = 51413, dport: int = 6881, flags: int = ACK | PSH, payload: bytes = b"",
        opts: bytes = b"") -> dpkt.tcp.TCP:
    assert len(opts) % 4 == 0
    return dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, off=5 + len(opts) // 4, opts=opts,
                        data=payload)


def udp(sport: int = 6881, dport: int = 6881, payload: bytes = b"") -> dpkt.udp.UDP:
    return dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload)


def ipv4(l4, src: bytes = SRC4, dst: bytes = DST4, opts: bytes = b"", off: int = 0,
         p: int | None = None) -> bytes:
    """IPv4 packet bytes; dpkt fills total length and checksum. `off` is the flags+fragment word."""
    if p is None:
        p = 6 if isinstance(l4, dpkt.tcp.TCP) else 17
    assert len(opts) % 4 == 0
    return bytes(dpkt.ip.IP(src=src, dst=dst, p=p, hl=5 + len(opts) // 4, opts=opts, _flags_offset=off,
                            ttl=64, data=l4))


def ipv6(l4, src: bytes = SRC6, dst: bytes = DST6, ext: bytes = b"", nxt: int | None = None) -> bytes:
    """IPv6 packet bytes; `ext` is a pre-built extension header chain and `nxt` the first next
    header (default: TCP/UDP from `l4`)."""
    body = ext + bytes(l4)
    if nxt is None:
        nxt = 6 if isinstance(l4, dpkt.tcp.TCP) else 17
    return bytes(dpkt.ip6.IP6(src=src, dst=dst, nxt=nxt, hlim=64, plen=len(body))) + body


def ext_header(nxt: int, units8: int = 1) -> bytes:
    """Hop-by-hop / routing / destination-options shaped header: next header, length in 8-byte
    units minus one, then padding."""
    return bytes([nxt, units8 - 1]) + b"\x00" * (units8 * 8 - 2)


def frag_header(nxt: int, offset_units: int, more: bool, ident: int = 0x1234) -> bytes:
    return struct.pack("!BBHI", nxt, 0, (offset_units << 3) | int(more), ident)


def ether(ip: bytes, etype: int = 0x0800, vlans: tuple[int, ...] = (), pad_to: int = 0) -> bytes:
    """Ethernet frame; `vlans` are TPIDs of stacked tags (outermost first); `pad_to` adds trailing
    padding the way NICs pad short frames to 60 bytes."""
    tags = b""
    for tpid in vlans:
        tags += struct.pack("!HH", tpid, 100)
    if vlans:
        frame = MAC_B + MAC_A + struct.pack("!H", vlans[0]) + tags[2:] + struct.pack("!H", etype) + ip
    else:
        # header only: given data, dpkt would re-parse (and re-serialise) the IP packet
        frame = bytes(dpkt.ethernet.Ethernet(dst=MAC_B, src=MAC_A, type=etype)) + ip
    if len(frame) < pad_to:
        frame += b"\x00" * (pad_to - len(frame))
    return frame


def sll(ip: bytes, proto: int = 0x0800) -> bytes:
    # packet type 0 (to us), ARPHRD_ETHER, address length 6, address padded to 8, protocol
    return struct.pack("!HHH8sH", 0, 1, 6, MAC_A, proto) + ip


def sll2(ip: bytes, proto: int = 0x0800) -> bytes:
    # protocol, reserved, interface index, ARPHRD_ETHER, packet type, address length, address
    return struct.pack("!HHIHBB8s", proto, 0, 2, 1, 0, 6, MAC_A) + ip


def null(ip: bytes, af: int, order: str = "<") -> bytes:
    return struct.pack(order + "I", af) + ip


def write_pcap(path: Path, frames, linktype: int = 1, nano: bool = False, snaplen: int = 65535,
               start_ts: float = 1700000000.0) -> Path:
    """Little-endian pcap through dpkt's writer; `frames` are bytes or (ts, bytes)."""
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=snaplen, linktype=linktype, nano=nano)
        for i, fr in enumerate(frames):
            ts, data = fr if isinstance(fr, tuple) else (start_ts + i, fr)
            w.writepkt(data, ts=ts)
    return path


def pcap_bytes_be(frames: list[tuple[int, int, bytes]], linktype: int = 1, nano: bool = False,
                  origlen_extra: int = 0) -> bytes:
    """Big-endian pcap by hand (dpkt only writes host order): frames are (sec, frac, data)."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(">IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, data in frames:
        out += struct.pack(">IIII", sec, frac, len(data), len(data) + origlen_extra) + data
    return out


def pcap_record_offsets(frames: list[bytes], rec_hdr: int = 16) -> list[int]:
    """Byte offset of each record header in a pcap with these frames."""
    offsets, off = [], 24
    for fr in frames:
        offsets.append(off)
        off += rec_hdr + len(fr)
    return offsets


# --- pcapng --------------------------------------------------------------------------------------

def ng_block(btype: int, body: bytes, order: str = "<") -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def ng_option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def ng_shb(order: str = "<") -> bytes:
    return ng_block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def ng_idb(linktype: int, tsresol: int | None = None, tsoffset: int | None = None,
           snaplen: int = 65535, order: str = "<") -> bytes:
    opts = b""
    if tsresol is not None:
        opts += ng_option(9, bytes([tsresol]), order)
    if tsoffset is not None:
        opts += ng_option(14, struct.pack(order + "q", tsoffset), order)
    if opts:
        opts += ng_option(0, b"", order)
    return ng_block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts, order)


def ng_epb(iface: int, ticks: int, data: bytes, order: str = "<") -> bytes:
    return ng_block(6, struct.pack(order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF,
                                   len(data), len(data)) + data, order)


def ng_spb(data: bytes, order: str = "<") -> bytes:
    return ng_block(3, struct.pack(order + "I", len(data)) + data, order)


def write_pcapng_dpkt(path: Path, idbs: list[tuple[int, int | None]],
                      packets: list[tuple[int, int, bytes]]) -> Path:
    """pcapng through dpkt's writer: idbs are (linktype, tsresol or None); packets are
    (iface_id, ticks, frame)."""
    idb_objs = []
    for linktype, tsresol in idbs:
        opts = []
        if tsresol is not None:
            opts = [dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL,
                                               data=bytes([tsresol])),
                    dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_ENDOFOPT)]
        idb_objs.append(dpkt.pcapng.InterfaceDescriptionBlockLE(linktype=linktype, snaplen=65535,
                                                                 opts=opts))
    buf = io.BytesIO()
    w = dpkt.pcapng.Writer(buf, idb=idb_objs)
    for iface, ticks, frame in packets:
        w.writepkt(dpkt.pcapng.EnhancedPacketBlockLE(
            iface_id=iface, ts_high=ticks >> 32, ts_low=ticks & 0xFFFFFFFF, caplen=len(frame),
            pkt_len=len(frame), pkt_data=frame))
    path.write_bytes(buf.getvalue())
    return path
