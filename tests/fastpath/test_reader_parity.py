"""The C reader (msewatch._fastpath.Reader) against the reference, sources/pcap.py: the same
packet tuples, the same ReadStats counters and the same PcapError text (file and byte offset),
on every frame variant the pcap source tests build, on pcapng layouts, on captures cut at every
byte, and on fuzzed frames and damage."""

from __future__ import annotations

import struct

import pytest
from _pcap_builders import (
    DST4, DST6, SRC4, SRC6, ether, ext_header, frag_header, ipv4, ipv6, ng_block, ng_epb, ng_idb,
    ng_shb, ng_spb, null, pcap_bytes_be, sll, sll2, tcp, udp, write_pcap, write_pcapng_dpkt,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msewatch.sources.pcap import PcapError, ReadStats, iter_packets

SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04


def collect(fn, path, fields=None):
    stats, pkts, err = ReadStats(), [], None
    try:
        for p in fn(str(path), stats):
            pkts.append(tuple(p[:fields]))
    except PcapError as e:
        err = (type(e).__name__, str(e))
    return pkts, stats, err


def assert_same(path, compiled):
    ref = collect(iter_packets, path)
    # the reference yields 8 fields, or 9 once it reports the header length too (issue 10)
    got = collect(compiled.iter_packets, path, len(ref[0][0]) if ref[0] else None)
    assert got[2] == ref[2], "errors differ"
    assert got[1] == ref[1], "read counters differ"
    assert got[0] == ref[0], "packets differ"
    return ref


def _mutate(data: bytes, at: int, value: int) -> bytes:
    b = bytearray(data)
    b[at] = value
    return bytes(b)


FRAMES = {
    "tcp": ether(ipv4(tcp(payload=b"hello"))),
    "tcp-flags": ether(ipv4(tcp(flags=SYN | ACK | FIN | RST | PSH))),
    "tcp-options": ether(ipv4(tcp(payload=b"data", opts=b"\x01\x01\x01\x01" * 3))),
    "ipv4-options": ether(ipv4(tcp(payload=b"x"), opts=b"\x01\x01\x01\x00")),
    "udp": ether(ipv4(udp(payload=b"dgram"))),
    "padded": ether(ipv4(udp(payload=b"a")), pad_to=60),
    "snaplen-cut": ether(ipv4(tcp(payload=b"Z" * 200)))[:100],
    "udp-len-short": ether(_mutate(ipv4(udp(payload=b"abcdef")), 20 + 5, 10)),
    "tso": ether(_mutate(_mutate(ipv4(tcp(payload=b"T" * 50)), 2, 0), 3, 0)),
    "vlan": ether(ipv4(udp(payload=b"v")), vlans=(0x8100,)),
    "qinq": ether(ipv6(tcp(payload=b"q")), etype=0x86DD, vlans=(0x88A8, 0x8100)),
    "vlan-cut": ether(ipv4(udp()), vlans=(0x8100,))[:16],
    "vlan-arp": ether(b"\x00" * 28, etype=0x0806, vlans=(0x8100,)),
    "arp": ether(b"\x00" * 28, etype=0x0806),
    "frag-first": ether(ipv4(udp(payload=b"f"), off=0x2000)),
    "frag-later": ether(ipv4(udp(payload=b"f"), off=0x0010)),
    "df": ether(ipv4(udp(payload=b"df"), off=0x4000)),
    "icmp": ether(ipv4(b"\x08\x00" + b"\x00" * 6, p=1)),
    "ipv6-tcp": ether(ipv6(tcp(payload=b"six")), etype=0x86DD),
    "ipv6-ext": ether(ipv6(udp(payload=b"e"), ext=ext_header(60) + ext_header(17, 2), nxt=0), etype=0x86DD),
    "ipv6-ah": ether(ipv6(tcp(payload=b"ah"), ext=bytes([6, 1]) + b"\x00" * 10, nxt=51), etype=0x86DD),
    "ipv6-frag": ether(ipv6(udp(payload=b"fr"), ext=frag_header(17, 1, False), nxt=44), etype=0x86DD),
    "ipv6-atomic-frag": ether(ipv6(udp(payload=b"at"), ext=frag_header(17, 0, False), nxt=44), etype=0x86DD),
    "ipv6-ext-past-end": ether(ipv6(udp(), ext=ext_header(17, 1)[:2] + b"\xff" * 6, nxt=60), etype=0x86DD),
    "ipv6-icmp": ether(ipv6(b"\x80\x00" + b"\x00" * 6, nxt=58), etype=0x86DD),
    "ipv6-jumbo-len0": ether(_mutate(_mutate(ipv6(udp(payload=b"j")), 4, 0), 5, 0), etype=0x86DD),
    "eth-short": ether(ipv4(tcp()))[:10],
    "ipv4-short": ether(ipv4(tcp()))[:14 + 12],
    "ihl-below-5": ether(_mutate(ipv4(tcp()), 0, 0x44)),
    "ihl-past-capture": ether(_mutate(ipv4(tcp()), 0, 0x4F))[:14 + 40],
    "total-below-ihl": ether(_mutate(_mutate(ipv4(tcp()), 2, 0), 3, 12)),
    "doff-below-5": ether(_mutate(ipv4(tcp(payload=b"x")), 20 + 12, 0x40)),
    "doff-past-packet": ether(_mutate(ipv4(tcp(payload=b"x")), 20 + 12, 0xF0)),
    "tcp-cut": ether(ipv4(tcp()))[:14 + 20 + 12],
    "udp-cut": ether(ipv4(udp()))[:14 + 20 + 6],
    "udp-len-below-8": ether(_mutate(ipv4(udp(payload=b"abc")), 20 + 5, 3)),
    "v4-in-v6-type": ether(ipv6(tcp()), etype=0x0800),
    "v6-in-v4-type": ether(ipv4(tcp()) + b"\x00" * 20, etype=0x86DD),
    "ipv6-short": ether(ipv6(tcp()), etype=0x86DD)[:14 + 30],
    "empty": b"",
    "ipv6-addrs": ether(ipv6(udp(payload=b"a"), src=DST6, dst=SRC6), etype=0x86DD),
}


def test_every_frame_variant_decodes_alike_on_ethernet(tmp_path, compiled):
    path = write_pcap(tmp_path / "eth.pcap", list(FRAMES.values()) * 2)
    pkts, stats, _ = assert_same(path, compiled)
    assert stats.decoded > 10 and stats.skipped_bad_header and stats.fragments and stats.skipped_non_ip


@pytest.mark.parametrize("linktype,wrap", [
    (113, lambda ip, v6: sll(ip, 0x86DD if v6 else 0x0800)),
    (276, lambda ip, v6: sll2(ip, 0x86DD if v6 else 0x0800)),
    (101, lambda ip, v6: ip), (12, lambda ip, v6: ip), (14, lambda ip, v6: ip),
    (228, lambda ip, v6: ip), (229, lambda ip, v6: ip),
    (0, lambda ip, v6: null(ip, 30 if v6 else 2)), (108, lambda ip, v6: null(ip, 24 if v6 else 2, ">")),
    (0, lambda ip, v6: null(ip, 99)),
])
def test_link_types_decode_alike(tmp_path, compiled, linktype, wrap):
    ips = [(ipv4(tcp(payload=b"t4")), False), (ipv6(udp(payload=b"u6")), True), (b"\x45\x00", False),
           (_mutate(ipv4(udp()), 0, 0x55), False)]
    path = write_pcap(tmp_path / "l.pcap", [wrap(ip, v6) for ip, v6 in ips] + [b"\x00" * 3])
    assert_same(path, compiled)


@pytest.mark.parametrize("nano", [False, True])
def test_timestamps_alike_in_both_byte_orders_and_resolutions(tmp_path, compiled, nano):
    frames = [(1700000000 + i, (123456789 if nano else 123456) + i, ether(ipv4(udp(payload=b"x"))))
              for i in range(5)]
    (tmp_path / "be.pcap").write_bytes(pcap_bytes_be(frames, nano=nano))
    assert_same(tmp_path / "be.pcap", compiled)
    le = write_pcap(tmp_path / "le.pcap", [(1700000000.000001 + 0.123457 * i, f[2]) for i, f in enumerate(frames)], nano=nano)
    assert_same(le, compiled)


def test_modified_pcap_24_byte_records(tmp_path, compiled):
    frame = ether(ipv4(udp(payload=b"kuz")))
    data = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    data += (struct.pack("<IIII", 5, 0, len(frame), len(frame)) + struct.pack("<IHBx", 2, 0x0800, 0) + frame) * 3
    (tmp_path / "m.pcap").write_bytes(data)
    assert_same(tmp_path / "m.pcap", compiled)


def test_large_file_records_straddle_chunk_edges(tmp_path, compiled):
    frames = [ether(ipv4(tcp(sport=i & 0xFFFF, payload=bytes([i & 0xFF]) * (i % 1400)))) for i in range(6000)]
    path = write_pcap(tmp_path / "big.pcap", frames)
    pkts, _, _ = assert_same(path, compiled)
    assert len(pkts) == 6000


def test_caplen_limits_follow_the_snaplen(tmp_path, compiled):
    big = ether(ipv4(udp(payload=b"B" * 60000))) * 5  # 300 kB record: above 256 KiB
    assert_same(write_pcap(tmp_path / "a.pcap", [big], snaplen=1 << 20), compiled)
    assert_same(write_pcap(tmp_path / "b.pcap", [big], snaplen=65535), compiled)


PCAPNG_LAYOUTS = {
    "two-ifaces": None,
    "pow2-tsresol-offset": ng_shb() + ng_idb(101, tsresol=0x80 | 10, tsoffset=1000) + ng_epb(0, 3 * 1024 + 512, ipv4(udp(payload=b"t"))),
    "negative-offset": ng_shb() + ng_idb(1, tsresol=9, tsoffset=-5) + ng_epb(0, 1_700_000_000_123_456_789, ether(ipv4(udp(payload=b"n")))),
    "huge-tsresol": ng_shb() + ng_idb(1, tsresol=40) + ng_epb(0, (1 << 64) - 1, ether(ipv4(udp(payload=b"h")))),
    "tsresol-1s": ng_shb() + ng_idb(1, tsresol=0) + ng_epb(0, (1 << 63) + 5, ether(ipv4(udp(payload=b"s")))),
    "big-offset": ng_shb() + ng_idb(1, tsoffset=(1 << 62)) + ng_epb(0, 12345, ether(ipv4(udp(payload=b"o")))),
    "spb": ng_shb() + ng_idb(1) + ng_epb(0, 42_000000, ether(ipv4(udp(payload=b"epb")))) + ng_spb(ether(ipv4(udp(payload=b"spb")))) * 2,
    "spb-snaplen": ng_shb() + ng_idb(1, snaplen=14 + 20 + 8 + 10) + ng_spb(ether(ipv4(udp(payload=b"S" * 100)))),
    "spb-first": ng_shb() + ng_idb(1) + ng_spb(ether(ipv4(udp(payload=b"first")))),
    "spb-no-iface": ng_shb() + ng_spb(ether(ipv4(udp()))),
    "sections": (ng_shb(">") + ng_idb(113, order=">") + ng_epb(0, 7_000000, sll(ipv4(udp(payload=b"be"))), ">")
                 + ng_shb("<") + ng_idb(0) + ng_epb(0, 8_000000, null(ipv4(udp(payload=b"le")), 2))),
    "section-resets-ifaces": ng_shb() + ng_idb(1) + ng_shb() + ng_epb(0, 1, ether(ipv4(udp()))),
    "misc-blocks": (ng_shb() + ng_block(4, b"\x00" * 4) + ng_idb(1) + ng_block(0xBAD, b"vendor")
                    + ng_epb(0, 1, ether(ipv4(udp(payload=b"ok")))) + ng_block(5, b"\x00" * 12)),
    "unsupported-silent": ng_shb() + ng_idb(1) + ng_idb(220) + ng_epb(0, 1, ether(ipv4(udp(payload=b"ok")))),
    "unsupported-used": ng_shb() + ng_idb(1) + ng_idb(220) + ng_epb(0, 1, ether(ipv4(udp()))) + ng_epb(1, 2, b"\x00" * 40),
    "undescribed-iface": ng_shb() + ng_idb(1) + ng_epb(3, 1, ether(ipv4(udp()))),
    "obsolete-pb": ng_shb() + ng_idb(1) + ng_block(2, struct.pack("<HHIIII", 0, 0, 0, 77, 42, 42) + ether(ipv4(udp(payload=b"pb")))[:42]),
    "bad-bom": ng_shb()[:8] + b"\x01\x02\x03\x04" + ng_shb()[12:],
    "short-shb": ng_block(0x0A0D0D0A, struct.pack("<I", 0x1A2B3C4D)),
    "version-2": ng_shb()[:12] + struct.pack("<H", 2) + ng_shb()[14:],
    "short-idb": ng_shb() + ng_block(1, b"\x01\x00"),
    "idb-garbage-options": ng_shb() + ng_block(1, struct.pack("<HHI", 1, 0, 0) + b"\x09\x00\xff\x00"),
    "short-epb": ng_shb() + ng_idb(1) + ng_block(6, b"\x00" * 8),
    "epb-caplen-past-block": ng_shb() + ng_idb(1) + ng_block(6, struct.pack("<IIIII", 0, 0, 0, 500, 500) + b"\x00" * 40),
    "short-spb": ng_shb() + ng_idb(1) + ng_block(3, b""),
    "trailing-mismatch": ng_shb() + ng_idb(1) + ng_epb(0, 1, ether(ipv4(udp())))[:-4] + b"\x00\x00\x00\x00",
    "length-not-multiple-of-4": ng_shb() + ng_idb(1) + struct.pack("<II", 6, 0x13) + b"\x00" * 40,
}


@pytest.mark.parametrize("layout", sorted(PCAPNG_LAYOUTS))
def test_pcapng_layouts_read_alike(tmp_path, compiled, layout):
    path = tmp_path / f"{layout}.pcapng"
    if layout == "two-ifaces":
        write_pcapng_dpkt(path, idbs=[(1, None), (101, 9)],
                          packets=[(0, 1700000000_500000, ether(ipv4(tcp(1000, 2000, payload=b"eth0")))),
                                   (1, 1700000001_250000000, ipv6(udp(3000, 4000, payload=b"tun0"))),
                                   (0, 1700000002_000001, ether(ipv4(tcp(1000, 2000, payload=b"eth0"))))])
    else:
        path.write_bytes(PCAPNG_LAYOUTS[layout])
    assert_same(path, compiled)


def _small_captures():
    frames = [ether(ipv4(udp(payload=f"pkt{i}".encode()))) for i in range(3)]
    pcap = b"".join(open(write_pcap(_TMP / "s.pcap", frames), "rb").read() for _ in [0])
    ng = ng_shb() + ng_idb(1) + b"".join(ng_epb(0, i, f) for i, f in enumerate(frames))
    return {"pcap": pcap, "pcapng": ng}


_TMP = None


def test_captures_cut_at_every_byte_fail_alike(tmp_path, compiled):
    global _TMP
    _TMP = tmp_path
    for kind, data in _small_captures().items():
        for cut in range(len(data) + 1):
            path = tmp_path / f"cut.{kind}"
            path.write_bytes(data[:cut])
            assert_same(path, compiled)


def test_missing_file_fails_alike(tmp_path, compiled):
    assert_same(tmp_path / "absent.pcap", compiled)


def test_not_a_capture_and_unsupported_link_type_fail_alike(tmp_path, compiled):
    (tmp_path / "t.txt").write_bytes(b"GET / HTTP/1.1\r\n")
    assert_same(tmp_path / "t.txt", compiled)
    assert_same(write_pcap(tmp_path / "usb.pcap", [b"\x00" * 40], linktype=220), compiled)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(linktype=st.sampled_from([0, 1, 12, 101, 108, 113, 276]), frame=st.binary(max_size=120))
def test_arbitrary_frame_bytes_decode_alike(tmp_path, compiled, linktype, frame):
    path = write_pcap(tmp_path / "fuzz.pcap", [frame, frame[:20], frame + frame], linktype=linktype)
    assert_same(path, compiled)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed_frame=st.sampled_from(sorted(FRAMES)), at=st.integers(0, 80), value=st.integers(0, 255),
       linktype=st.sampled_from([1, 113]))
def test_mutated_real_headers_decode_alike(tmp_path, compiled, seed_frame, at, value, linktype):
    frame = FRAMES[seed_frame]
    if linktype == 113:
        frame = sll(frame[14:], int.from_bytes(frame[12:14], "big")) if len(frame) >= 14 else frame
    if at < len(frame):
        frame = _mutate(frame, at, value)
    assert_same(write_pcap(tmp_path / "m.pcap", [frame], linktype=linktype), compiled)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=400), noise=st.binary(max_size=64), kind=st.sampled_from(["pcap", "pcapng"]))
def test_damaged_captures_fail_alike(tmp_path, compiled, cut, noise, kind):
    frames = [ether(ipv4(udp(payload=f"pkt{i}".encode()))) for i in range(3)]
    if kind == "pcap":
        data = write_pcap(tmp_path / "src.pcap", frames).read_bytes()
    else:
        data = ng_shb() + ng_idb(1) + b"".join(ng_epb(0, i, f) for i, f in enumerate(frames))
    path = tmp_path / f"d.{kind}"
    path.write_bytes(data[:cut] + noise)
    assert_same(path, compiled)


def test_header_lengths_are_reported_beside_the_captured_payload(tmp_path, compiled):
    """The 9th field: the payload length the IP/TCP/UDP headers announce (a snaplen-cut packet
    keeps its full size), which the evidence contract uses for sizes."""
    frames = [ether(ipv4(tcp(payload=b"Z" * 200)))[:100], ether(ipv4(udp(payload=b"U" * 300)))[:60],
              ether(ipv6(tcp(payload=b"S" * 500)), etype=0x86DD)[:120], ether(ipv4(tcp(payload=b"full")))]
    path = write_pcap(tmp_path / "snap.pcap", frames, snaplen=96)
    pkts = list(compiled.iter_packets(str(path), ReadStats()))
    assert [(len(p[7]), p[8]) for p in pkts] == [(100 - 54, 200), (60 - 42, 300), (120 - 74, 500), (4, 4)]
