"""Packet source for the offline path: pcap and pcapng files -> decoded TCP/UDP packets.

`iter_packets(path, stats)` yields one tuple per TCP or UDP packet:

    (ts, ipproto, src_addr, sport, dst_addr, dport, tcp_flags, payload, length)

ipproto is 6 or 17, the addresses are the raw 4- or 16-byte network-order addresses, tcp_flags is
byte 13 of the TCP header (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ...; 0 for UDP),
payload is the L4 payload as far as the IP length says *and* the capture holds (Ethernet padding
never leaks into it), and length is the L4 payload length the headers announce (IP total or
payload length minus the IP and TCP headers; the UDP length minus 8). The two differ only when
the snaplen cut the packet: sizes in the evidence are always `length`, heads are `payload`
(docs/evidence.md). Without an IP length (TSO super-packets, jumbograms) the capture is the length. Everything else is counted in `ReadStats` and skipped; a bad packet header
never raises. A file that cannot be read further raises `PcapError` naming the file and the byte
offset of the bad record, *after* every packet before that record has been yielded.

How the work is split, and why. Numbers from benchmarks/bench_pcap_read.py (200k synthetic
Ethernet packets, 90 MB; one core, CPython 3.11, dpkt 1.9.8; best of 3), packets/s:

                        dpkt        here     ratio
    pcap framing       541,000   2,266,000   4.2x   dpkt.pcap.Reader vs the record loop below
    decode to tuples    92,000     601,000   6.5x   dpkt.ethernet.Ethernet objects vs _decode
    pcapng framing     303,000     915,000   3.0x   dpkt.pcapng.Reader vs the block loop below

* pcap records are framed here with struct: 16-byte record headers read from 1 MiB chunks. Besides
  being 4x slower, dpkt.pcap.Reader turns nanosecond timestamps into Decimal, silently yields a
  short last packet when the body is truncated, and raises a bare dpkt.NeedData with no offset on
  a short header, so offsets would have to be re-derived anyway.
* pcapng blocks are framed here too (8-byte block header, trailing length check); dpkt's
  `InterfaceDescriptionBlock(LE)` parses the IDB options (if_tsresol, if_tsoffset).
  dpkt.pcapng.Reader itself cannot be used: it honours only the *first* IDB (one link type and one
  tsresol for the whole file), ignores the EPB interface id and drops Simple Packet Blocks.
* The magic numbers (pcap and pcapng) are dpkt's (tests/sources checks that they agree); dpkt itself
  is imported only for a pcapng interface block, so `msewatch analyze` on a pcap starts without it.
* L2/L3/L4 headers are decoded by hand on offsets into the record buffer, so only the addresses
  and the payload are copied. The benchmark checks first that both paths yield identical tuples.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO


__all__ = [
    "Packet",
    "PcapError",
    "ReadStats",
    "SUPPORTED_LINK_TYPES",
    "UnsupportedLinkType",
    "file_size",
    "iter_packets",
]

Packet = tuple[float, int, bytes, int, bytes, int, int, bytes, int]


class PcapError(Exception):
    """The capture cannot be read (further). The message names the file and, where it applies, the
    byte offset of the bad record."""


class UnsupportedLinkType(PcapError):
    """The capture, or a pcapng interface that carries packets, has a link type we don't decode."""


@dataclass(slots=True)
class ReadStats:
    """Counters of one read. `packets` counts every packet record; each one ends in exactly one of
    `decoded`, `skipped_bad_header`, `skipped_non_ip`, `skipped_other_proto` or `fragments`.
    `bytes_read` is the file offset just past the last record consumed (for a progress bar against
    `file_size(path)`); it is updated on every record."""

    packets: int = 0
    decoded: int = 0
    skipped_bad_header: int = 0
    skipped_non_ip: int = 0
    skipped_other_proto: int = 0
    fragments: int = 0
    bytes_read: int = 0


def file_size(path: str | os.PathLike[str]) -> int:
    """Size of the capture in bytes: the denominator for a progress bar on stats.bytes_read."""
    return os.stat(path).st_size


# --- link types (numbers from the tcpdump.org LINKTYPE_ registry; dpkt's DLT_RAW/DLT_LOOP are
# platform-dependent, file formats are not) -------------------------------------------------------

_ETHERNET, _SLL, _SLL2, _RAW_IP, _NULL = range(5)

_LINK_KIND: dict[int, int] = {
    0: _NULL,  # LINKTYPE_NULL: 4-byte AF_ value in the capturing host's byte order
    108: _NULL,  # LINKTYPE_LOOP: the same in network byte order (either order is accepted)
    1: _ETHERNET,  # LINKTYPE_ETHERNET
    113: _SLL,  # LINKTYPE_LINUX_SLL (16-byte cooked header, protocol at offset 14)
    276: _SLL2,  # LINKTYPE_LINUX_SLL2 (20-byte cooked header, protocol at offset 0)
    101: _RAW_IP,  # LINKTYPE_RAW
    12: _RAW_IP,  # DLT_RAW as written by most BSD-derived libpcaps before LINKTYPE_RAW existed
    14: _RAW_IP,  # DLT_RAW on OpenBSD
    228: _RAW_IP,  # LINKTYPE_IPV4
    229: _RAW_IP,  # LINKTYPE_IPV6
}
SUPPORTED_LINK_TYPES: frozenset[int] = frozenset(_LINK_KIND)

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))  # 802.1Q, 802.1ad (QinQ), pre-standard QinQ
_AF_INET = 2
_AF_INET6 = frozenset((10, 23, 24, 28, 30))  # Linux, Windows, NetBSD/OpenBSD, FreeBSD, Darwin

_IPPROTO_TCP = 6
_IPPROTO_UDP = 17
_IPV6_SKIPPABLE_EXT = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_IPV6_AH = 51

# A record or block larger than this is corruption, not data: libpcap's own maximum snaplen is
# 256 KiB (MAXIMUM_SNAPLEN); a pcap header may announce a larger snaplen, which we then honour up to
# 16 MiB. pcapng blocks get the same bound plus room for options.
_DEFAULT_MAX_CAPLEN = 262144
_HARD_MAX_CAPLEN = 16 << 20
_MAX_BLOCK_LEN = _HARD_MAX_CAPLEN + 65536
_CHUNK = 1 << 20

_u16be = struct.Struct("!H").unpack_from
_ipv4_fields = struct.Struct("!BxHxxHxB").unpack_from  # vers/ihl, total length, flags+offset, proto
_ports = struct.Struct("!HH").unpack_from
_ipv4_len_frag_proto = struct.Struct("!HxxHxB").unpack_from  # from IPv4 byte 2: total length, flags+offset, proto
_udp_ports_len = struct.Struct("!HHH").unpack_from


def _decode(
    buf: bytes, off: int, end: int, ts: float, kind: int, stats: ReadStats
) -> Packet | None:
    """Decode the frame buf[off:end] of link kind `kind`; return the packet tuple, or count the
    reason in `stats` and return None. Works on offsets into the record buffer so that only the
    addresses and the payload are copied."""
    # ---- link layer: find the IP header and the IP version the link layer announces (0 = any)
    if kind == _ETHERNET or kind == _SLL or kind == _SLL2:
        if kind == _ETHERNET:
            if end - off < 14:
                stats.skipped_bad_header += 1
                return None
            etype = (buf[off + 12] << 8) | buf[off + 13]
            off += 14
        elif kind == _SLL:
            if end - off < 16:
                stats.skipped_bad_header += 1
                return None
            etype = (buf[off + 14] << 8) | buf[off + 15]
            off += 16
        else:
            if end - off < 20:
                stats.skipped_bad_header += 1
                return None
            etype = (buf[off] << 8) | buf[off + 1]
            off += 20
        # VLAN tags (stacked for QinQ): TPID was `etype`, then 2 bytes TCI, 2 bytes inner type.
        while etype in _ETH_VLAN_TPIDS:
            if end - off < 4:
                stats.skipped_bad_header += 1
                return None
            etype = (buf[off + 2] << 8) | buf[off + 3]
            off += 4
        if etype == _ETH_IPV4:
            want = 4
        elif etype == _ETH_IPV6:
            want = 6
        else:
            stats.skipped_non_ip += 1
            return None
    elif kind == _RAW_IP:
        want = 0
    else:  # _NULL / LOOP: AF_ value as a 32-bit word in whichever byte order wrote it
        if end - off < 4:
            stats.skipped_bad_header += 1
            return None
        af = int.from_bytes(buf[off : off + 4], "little")
        if af > 0xFFFF:
            af = int.from_bytes(buf[off : off + 4], "big")
        off += 4
        if af == _AF_INET:
            want = 4
        elif af in _AF_INET6:
            want = 6
        else:
            stats.skipped_non_ip += 1
            return None

    # ---- network layer
    if end - off < 20:  # shorter than either IP header's fixed part
        stats.skipped_bad_header += 1
        return None
    version = buf[off] >> 4
    if want and version != want:
        stats.skipped_bad_header += 1
        return None
    if version == 4:
        vihl, total_len, frag, proto = _ipv4_fields(buf, off)
        ihl = (vihl & 0x0F) << 2
        if ihl < 20 or off + ihl > end:
            stats.skipped_bad_header += 1
            return None
        if total_len == 0:
            # TSO/GSO on the capturing host: the kernel hands libpcap super-packets with total
            # length 0; the captured length is the only length there is.
            ip_end = wire_end = end
        elif total_len < ihl:
            stats.skipped_bad_header += 1
            return None
        else:
            ip_end = wire_end = off + total_len
            if ip_end > end:  # snaplen cut it: take what was captured
                ip_end = end
        if frag & 0x3FFF:  # MF set or offset != 0: any piece of a fragmented datagram
            stats.fragments += 1
            return None
        src = buf[off + 12 : off + 16]
        dst = buf[off + 16 : off + 20]
        l4 = off + ihl
    elif version == 6:
        if end - off < 40:
            stats.skipped_bad_header += 1
            return None
        payload_len = _u16be(buf, off + 4)[0]
        proto = buf[off + 6]
        src = buf[off + 8 : off + 24]
        dst = buf[off + 24 : off + 40]
        l4 = off + 40
        if payload_len == 0:  # jumbogram or TSO: trust the capture
            ip_end = wire_end = end
        else:
            ip_end = wire_end = l4 + payload_len
            if ip_end > end:
                ip_end = end
        while proto != _IPPROTO_TCP and proto != _IPPROTO_UDP:
            if proto in _IPV6_SKIPPABLE_EXT or proto == _IPV6_AH:
                if ip_end - l4 < 8:
                    stats.skipped_bad_header += 1
                    return None
                if proto == _IPV6_AH:
                    ext_len = (buf[l4 + 1] + 2) << 2
                else:
                    ext_len = (buf[l4 + 1] + 1) << 3
                if l4 + ext_len > ip_end:
                    stats.skipped_bad_header += 1
                    return None
                proto = buf[l4]
                l4 += ext_len
            elif proto == _IPV6_FRAGMENT:
                if ip_end - l4 < 8:
                    stats.skipped_bad_header += 1
                    return None
                if _u16be(buf, l4 + 2)[0] & 0xFFF9:  # offset != 0 or M set
                    stats.fragments += 1
                    return None
                # An atomic fragment (offset 0, M clear; RFC 6946) is a whole datagram.
                proto = buf[l4]
                l4 += 8
            else:  # ICMPv6, ESP, no-next-header, ...
                stats.skipped_other_proto += 1
                return None
    else:
        stats.skipped_bad_header += 1
        return None

    # ---- transport layer
    if proto == _IPPROTO_TCP:
        if ip_end - l4 < 20:
            stats.skipped_bad_header += 1
            return None
        sport, dport = _ports(buf, l4)
        data_off = (buf[l4 + 12] >> 4) << 2
        if data_off < 20 or l4 + data_off > ip_end:
            stats.skipped_bad_header += 1
            return None
        return (ts, 6, src, sport, dst, dport, buf[l4 + 13], buf[l4 + data_off : ip_end],
                max(0, wire_end - l4 - data_off))
    if proto == _IPPROTO_UDP:
        if ip_end - l4 < 8:
            stats.skipped_bad_header += 1
            return None
        sport, dport, udp_len = _udp_ports_len(buf, l4)
        if udp_len:  # 0 only for IPv6 jumbograms: then the IP length rules
            if udp_len < 8:
                stats.skipped_bad_header += 1
                return None
            if l4 + udp_len < wire_end:
                wire_end = l4 + udp_len
            if l4 + udp_len < ip_end:
                ip_end = l4 + udp_len
        return (ts, 17, src, sport, dst, dport, 0, buf[l4 + 8 : ip_end], wire_end - l4 - 8)
    stats.skipped_other_proto += 1
    return None


# --- file formats -------------------------------------------------------------------------------

# pcap magic as read big-endian from the first 4 bytes -> (record header byte order, ts divisor,
# record header length). MODPCAP (Alexey Kuznetzov's patched libpcap) has 8 more bytes per record.
_PCAP_MAGICS: dict[int, tuple[str, float, int]] = {
    0xA1B2C3D4: (">", 1e6, 16),  # dpkt.pcap.TCPDUMP_MAGIC
    0xD4C3B2A1: ("<", 1e6, 16),  # PMUDPCT_MAGIC
    0xA1B23C4D: (">", 1e9, 16),  # TCPDUMP_MAGIC_NANO
    0x4D3CB2A1: ("<", 1e9, 16),  # PMUDPCT_MAGIC_NANO
    0xA1B2CD34: (">", 1e6, 24),  # MODPCAP_MAGIC
    0x34CDB2A1: ("<", 1e6, 24),  # PACPDOM_MAGIC
}
_PCAPNG_SHB = 0x0A0D0D0A  # dpkt.pcapng.PCAPNG_BT_SHB, the same in both byte orders
_PCAPNG_BOM = 0x1A2B3C4D  # dpkt.pcapng.BYTE_ORDER_MAGIC
_PCAPNG_VERSION_MAJOR = 1  # dpkt.pcapng.PCAPNG_VERSION_MAJOR


def _link_kind(name: str, linktype: int, where: str = "") -> int:
    kind = _LINK_KIND.get(linktype)
    if kind is None:
        supported = ", ".join(str(t) for t in sorted(_LINK_KIND))
        raise UnsupportedLinkType(
            f"{name}: unsupported link type {linktype}{where} (supported: {supported})"
        )
    return kind


def iter_packets(path: str | os.PathLike[str], stats: ReadStats) -> Iterator[Packet]:
    """Yield the TCP/UDP packets of a pcap or pcapng file in file order; see the module docstring.

    A generator: errors (including a missing file or an unsupported link type) surface on the
    first `next()`. Counters and `stats.bytes_read` are updated on every record."""
    name = os.fspath(path)
    try:
        f = open(name, "rb", buffering=0)
    except OSError as e:
        raise PcapError(f"{name}: cannot open: {e.strerror or e}") from e
    with f:
        try:
            head = f.read(4)
        except OSError as e:
            raise PcapError(f"{name}: cannot read: {e.strerror or e}") from e
        magic = int.from_bytes(head, "big")
        if len(head) == 4 and magic in _PCAP_MAGICS:
            yield from _iter_pcap(f, name, head, _PCAP_MAGICS[magic], stats)
        elif len(head) == 4 and magic == _PCAPNG_SHB:
            yield from _iter_pcapng(f, name, head, stats)
        elif not head:
            raise PcapError(f"{name}: not a pcap or pcapng file (empty file)")
        else:
            raise PcapError(
                f"{name}: not a pcap or pcapng file (magic 0x{head.hex()})"
            )


def _read(f: BinaryIO, n: int, name: str) -> bytes:
    try:
        return f.read(n)
    except OSError as e:
        raise PcapError(f"{name}: cannot read: {e.strerror or e}") from e


def _iter_pcap(
    f: BinaryIO, name: str, head: bytes, fmt: tuple[str, float, int], stats: ReadStats
) -> Iterator[Packet]:
    order, divisor, rec_len = fmt
    head += _read(f, 20, name)
    if len(head) < 24:
        raise PcapError(
            f"{name}: truncated pcap file header at byte offset 0 ({len(head)} of 24 bytes)"
        )
    snaplen, linktype = struct.unpack_from(order + "II", head, 16)
    # The upper bits of the link-type word carry FCS information (pcap spec, "LinkType and
    # additional information"); the link type itself is the low 16 bits.
    kind = _link_kind(name, linktype & 0xFFFF)
    max_caplen = min(max(snaplen, _DEFAULT_MAX_CAPLEN), _HARD_MAX_CAPLEN)
    rec_hdr = struct.Struct(order + "IIII").unpack_from

    decode = _decode
    eth = kind == _ETHERNET
    ipv4_fast = _ipv4_len_frag_proto
    ports = _ports
    udp_hdr = _udp_ports_len
    buf = b""
    pos = 0
    base = 24  # file offset of buf[0]
    stats.bytes_read = 24
    while True:
        if len(buf) - pos < rec_len:
            chunk = _read(f, _CHUNK, name)
            if not chunk:
                if len(buf) > pos:
                    raise PcapError(
                        f"{name}: truncated packet record header at byte offset {base + pos}"
                        f" ({len(buf) - pos} of {rec_len} bytes)"
                    )
                return
            buf = buf[pos:] + chunk
            base += pos
            pos = 0
            continue
        sec, frac, caplen, _origlen = rec_hdr(buf, pos)
        if caplen > max_caplen:
            raise PcapError(
                f"{name}: corrupt packet record at byte offset {base + pos}"
                f" (captured length {caplen} exceeds {max_caplen})"
            )
        start = pos + rec_len
        stop = start + caplen
        if stop > len(buf):
            chunk = _read(f, max(_CHUNK, stop - len(buf)), name)
            if not chunk:
                raise PcapError(
                    f"{name}: truncated packet record at byte offset {base + pos}"
                    f" (captured length {caplen}, {len(buf) - start} bytes left in file)"
                )
            buf = buf[pos:] + chunk
            base += pos
            pos = 0
            continue
        pos = stop
        stats.packets += 1
        stats.bytes_read = base + stop
        # Fast path (same result as _decode): untagged Ethernet, IPv4 without options, not a
        # fragment, TCP or UDP with sane lengths. Everything else goes through _decode.
        if eth and caplen >= 42 and buf[start + 12] == 8 and buf[start + 13] == 0 and buf[start + 14] == 0x45:
            total_len, frag, proto = ipv4_fast(buf, start + 16)
            if total_len >= 20 and not frag & 0x3FFF:
                ip_end = wire_end = start + 14 + total_len
                if ip_end > stop:
                    ip_end = stop
                l4 = start + 34
                if proto == 6:
                    if ip_end - l4 >= 20:
                        data_off = (buf[l4 + 12] >> 4) << 2
                        if data_off >= 20 and l4 + data_off <= ip_end:
                            sport, dport = ports(buf, l4)
                            stats.decoded += 1
                            yield (sec + frac / divisor, 6, buf[start + 26 : start + 30], sport,
                                   buf[start + 30 : start + 34], dport, buf[l4 + 13], buf[l4 + data_off : ip_end],
                                   wire_end - l4 - data_off)
                            continue
                elif proto == 17:
                    if ip_end - l4 >= 8:
                        sport, dport, udp_len = udp_hdr(buf, l4)
                        if udp_len >= 8:
                            if l4 + udp_len < wire_end:
                                wire_end = l4 + udp_len
                            if l4 + udp_len < ip_end:
                                ip_end = l4 + udp_len
                            stats.decoded += 1
                            yield (sec + frac / divisor, 17, buf[start + 26 : start + 30], sport,
                                   buf[start + 30 : start + 34], dport, 0, buf[l4 + 8 : ip_end],
                                   wire_end - l4 - 8)
                            continue
        pkt = decode(buf, start, stop, sec + frac / divisor, kind, stats)
        if pkt is not None:
            stats.decoded += 1
            yield pkt


class _Interface:
    """One pcapng interface: how to decode its frames and scale its timestamps."""

    __slots__ = ("linktype", "kind", "divisor", "ts_offset", "snaplen")

    def __init__(self, linktype: int, divisor: int, ts_offset: int, snaplen: int) -> None:
        self.linktype = linktype
        self.kind = _LINK_KIND.get(linktype)  # None: raise when a packet arrives on it
        self.divisor = divisor
        self.ts_offset = ts_offset
        self.snaplen = snaplen


def _parse_idb(block: bytes, little: bool, name: str, offset: int) -> _Interface:
    import dpkt  # here, not at the top: a pcap file never needs it (start-up time)
    from dpkt import pcapng as _dpkt_pcapng

    if little:
        cls = _dpkt_pcapng.InterfaceDescriptionBlockLE
    else:
        cls = _dpkt_pcapng.InterfaceDescriptionBlock
    try:
        idb = cls(block)
        divisor = 1_000_000  # if_tsresol absent: microseconds
        ts_offset = 0
        for opt in idb.opts:
            if opt.code == _dpkt_pcapng.PCAPNG_OPT_IF_TSRESOL and opt.data:
                # MSB clear: 10^-n seconds; MSB set: 2^-n seconds.
                res = opt.data[0]
                divisor = (2 if res & 0x80 else 10) ** (res & 0x7F)
            elif opt.code == _dpkt_pcapng.PCAPNG_OPT_IF_TSOFFSET and len(opt.data) == 8:
                ts_offset = struct.unpack("<q" if little else ">q", opt.data)[0]
    except (dpkt.Error, ValueError, struct.error, IndexError, UnicodeDecodeError) as e:
        raise PcapError(
            f"{name}: corrupt interface description block at byte offset {offset} ({e!r})"
        ) from e
    return _Interface(idb.linktype, divisor, ts_offset, idb.snaplen)


def _iter_pcapng(f: BinaryIO, name: str, head: bytes, stats: ReadStats) -> Iterator[Packet]:
    decode = _decode
    buf = head
    pos = 0
    base = 0  # file offset of buf[0]
    little = True
    blk_hdr = struct.Struct("<II").unpack_from
    u32 = struct.Struct("<I").unpack_from
    u16 = struct.Struct("<H").unpack_from
    epb_hdr = struct.Struct("<IIIII").unpack_from  # interface id, ts high, ts low, caplen, origlen
    pb_hdr = struct.Struct("<HHIIII").unpack_from  # obsolete Packet Block: u16 interface id, drops
    interfaces: list[_Interface] = []
    last_ts = 0.0
    while True:
        if len(buf) - pos < 12:
            chunk = _read(f, _CHUNK, name)
            if not chunk:
                if len(buf) > pos:
                    raise PcapError(
                        f"{name}: truncated pcapng block header at byte offset {base + pos}"
                        f" ({len(buf) - pos} bytes)"
                    )
                return
            buf = buf[pos:] + chunk
            base += pos
            pos = 0
            continue
        offset = base + pos
        if buf[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            # A Section Header Block sets the byte order of everything up to the next one.
            bom = buf[pos + 8 : pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                little = True
            elif bom == b"\x1a\x2b\x3c\x4d":
                little = False
            else:
                raise PcapError(
                    f"{name}: corrupt section header block at byte offset {offset}"
                    f" (byte-order magic 0x{bom.hex()})"
                )
            o = "<" if little else ">"
            blk_hdr = struct.Struct(o + "II").unpack_from
            u32 = struct.Struct(o + "I").unpack_from
            u16 = struct.Struct(o + "H").unpack_from
            epb_hdr = struct.Struct(o + "IIIII").unpack_from
            pb_hdr = struct.Struct(o + "HHIIII").unpack_from
        btype, blen = blk_hdr(buf, pos)
        if blen < 12 or blen & 3 or blen > _MAX_BLOCK_LEN:
            raise PcapError(
                f"{name}: corrupt pcapng block at byte offset {offset}"
                f" (type 0x{btype:08x}, total length {blen})"
            )
        if len(buf) - pos < blen:
            chunk = _read(f, max(_CHUNK, blen), name)
            if not chunk:
                raise PcapError(
                    f"{name}: truncated pcapng block at byte offset {offset}"
                    f" (type 0x{btype:08x}, total length {blen},"
                    f" {len(buf) - pos} bytes left in file)"
                )
            buf = buf[pos:] + chunk
            base += pos
            pos = 0
            continue
        if u32(buf, pos + blen - 4)[0] != blen:
            raise PcapError(
                f"{name}: corrupt pcapng block at byte offset {offset}"
                f" (type 0x{btype:08x}: leading and trailing total lengths differ)"
            )
        body = pos + 8
        block_end = pos + blen - 4  # where the trailing length starts
        pos += blen
        stats.bytes_read = base + pos

        if btype == 6 or btype == 2:  # Enhanced Packet Block / obsolete Packet Block
            if blen < 32:
                raise PcapError(
                    f"{name}: corrupt packet block at byte offset {offset} (total length {blen})"
                )
            if btype == 6:
                iface_id, ts_high, ts_low, caplen, _origlen = epb_hdr(buf, body)
            else:
                iface_id, _drops, ts_high, ts_low, caplen, _origlen = pb_hdr(buf, body)
            start = body + 20
            if start + caplen > block_end:
                raise PcapError(
                    f"{name}: corrupt packet block at byte offset {offset}"
                    f" (captured length {caplen} exceeds the block)"
                )
            if iface_id >= len(interfaces):
                raise PcapError(
                    f"{name}: packet block at byte offset {offset} names interface {iface_id},"
                    f" but only {len(interfaces)} are described"
                )
            iface = interfaces[iface_id]
            # Split seconds from the fraction in integers first: a 64-bit tick count in ns is
            # beyond a double's 53 bits, and int / float would round it before dividing.
            sec, frac = divmod((ts_high << 32) | ts_low, iface.divisor)
            ts = iface.ts_offset + sec + frac / iface.divisor
        elif btype == 3:  # Simple Packet Block: interface 0, no timestamp
            if blen < 16:
                raise PcapError(
                    f"{name}: corrupt simple packet block at byte offset {offset}"
                    f" (total length {blen})"
                )
            if not interfaces:
                raise PcapError(
                    f"{name}: simple packet block at byte offset {offset} before any interface"
                    " description block"
                )
            iface = interfaces[0]
            origlen = u32(buf, body)[0]
            start = body + 4
            caplen = min(origlen, block_end - start)
            if iface.snaplen:
                caplen = min(caplen, iface.snaplen)
            # No timestamp in an SPB: reuse the last one seen, so time never runs backwards.
            ts = last_ts
        elif btype == 1:
            if blen < 20:
                raise PcapError(
                    f"{name}: corrupt interface description block at byte offset {offset}"
                    f" (total length {blen})"
                )
            interfaces.append(_parse_idb(buf[pos - blen : pos], little, name, offset))
            continue
        elif btype == _PCAPNG_SHB:
            if blen < 28:
                raise PcapError(
                    f"{name}: corrupt section header block at byte offset {offset}"
                    f" (total length {blen})"
                )
            major = u16(buf, body + 4)[0]
            if major != _PCAPNG_VERSION_MAJOR:
                raise PcapError(
                    f"{name}: unsupported pcapng version {major} at byte offset {offset}"
                )
            interfaces = []  # interface ids are per section
            continue
        else:  # name resolution, interface statistics, decryption secrets, custom, ...
            continue

        if iface.kind is None:
            where = f" on pcapng interface {iface_id if btype != 3 else 0}"
            _link_kind(name, iface.linktype, where)
        last_ts = ts
        stats.packets += 1
        pkt = decode(buf, start, start + caplen, ts, iface.kind, stats)
        if pkt is not None:
            stats.decoded += 1
            yield pkt
