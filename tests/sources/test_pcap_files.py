"""File formats of the pcap source: pcap flavours, pcapng blocks and interfaces, chunk boundaries,
progress accounting, and corrupt files (everything before the bad record is yielded, then
PcapError names the file and the exact byte offset)."""

from __future__ import annotations

import struct

import pytest
from _pcap_builders import (
    DST4, SRC4, SRC6, ether, ipv4, ipv6, ng_block, ng_epb, ng_idb, ng_shb, ng_spb, null,
    pcap_bytes_be, pcap_record_offsets, sll, tcp, udp, write_pcap, write_pcapng_dpkt,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msewatch.sources.pcap import (
    PcapError, ReadStats, UnsupportedLinkType, file_size, iter_packets,
)


def read(path):
    stats = ReadStats()
    return list(iter_packets(str(path), stats)), stats


def read_until_error(path):
    """Collect what is yielded before the error; return (packets, stats, error)."""
    stats, pkts = ReadStats(), []
    with pytest.raises(PcapError) as exc:
        for p in iter_packets(str(path), stats):
            pkts.append(p)
    return pkts, stats, exc.value


def frames_with_payloads(n: int) -> list[bytes]:
    return [ether(ipv4(udp(payload=f"pkt{i}".encode()))) for i in range(n)]


# --- pcap flavours ---------------------------------------------------------------------------------

def test_microsecond_pcap_timestamps(tmp_path):
    path = write_pcap(tmp_path / "us.pcap", [(1700000000.123456, ether(ipv4(udp())))])
    pkts, _ = read(path)
    assert pkts[0][0] == pytest.approx(1700000000.123456, abs=1e-7)


def test_nanosecond_pcap_timestamps_keep_sub_microsecond_digits(tmp_path):
    # A small epoch value: near 2023 a float's resolution is ~0.24 us, hiding the nanoseconds.
    path = write_pcap(tmp_path / "ns.pcap", [(100.123456789, ether(ipv4(udp())))], nano=True)
    assert path.read_bytes()[:4] == bytes.fromhex("4d3cb2a1")  # little-endian nanosecond magic
    pkts, _ = read(path)
    assert pkts[0][0] == pytest.approx(100.123456789, abs=1e-12)


@pytest.mark.parametrize("nano,frac,expected", [(False, 250000, 1600000000.25),
                                                (True, 250000001, 1600000000.250000001)])
def test_big_endian_pcap_is_read(tmp_path, nano, frac, expected):
    frame = ether(ipv4(tcp(payload=b"be")))
    path = tmp_path / "be.pcap"
    path.write_bytes(pcap_bytes_be([(1600000000, frac, frame)], nano=nano))
    pkts, stats = read(path)
    assert pkts[0][0] == pytest.approx(expected, abs=1e-7) and pkts[0][7] == b"be"
    assert stats.bytes_read == path.stat().st_size


def test_modified_pcap_with_24_byte_records_is_read(tmp_path):
    frame = ether(ipv4(udp(payload=b"kuz")))
    data = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    data += struct.pack("<IIII", 5, 0, len(frame), len(frame)) + struct.pack("<IHBx", 2, 0x0800, 0)
    data += frame
    (tmp_path / "m.pcap").write_bytes(data.replace(b"\x34\xcd\xb2\xa1", b"\x34\xcd\xb2\xa1", 1))
    pkts, _ = read(tmp_path / "m.pcap")
    assert pkts[0][7] == b"kuz"


def test_records_straddling_read_chunks_are_reassembled(tmp_path):
    # ~3.5 MiB with sizes that don't divide 1 MiB: record headers and bodies cross chunk edges.
    frames = [ether(ipv4(tcp(sport=i & 0xFFFF, payload=bytes([i & 0xFF]) * (i % 1400))))
              for i in range(5000)]
    path = write_pcap(tmp_path / "big.pcap", frames)
    assert path.stat().st_size > 3 << 20
    pkts, stats = read(path)
    assert len(pkts) == 5000
    assert all(p[3] == i and p[7] == bytes([i & 0xFF]) * (i % 1400) for i, p in enumerate(pkts))
    assert stats.bytes_read == path.stat().st_size


def test_a_caplen_above_the_default_limit_is_accepted_when_the_snaplen_announces_it(tmp_path):
    frame = ether(ipv4(udp(payload=b"J" * 1000)))[:14 + 20 + 8] + b"J" * 300000
    path = write_pcap(tmp_path / "jumbo.pcap", [frame], snaplen=400000)
    pkts, stats = read(path)
    assert stats.decoded == 1 and pkts[0][7] == b"J" * 1000


# --- progress and counters -------------------------------------------------------------------------

def test_bytes_read_follows_each_record_and_ends_at_file_size(tmp_path):
    frames = [ether(ipv4(udp(payload=b"a"))), ether(b"\x00" * 28, etype=0x0806),
              ether(ipv4(udp(payload=b"bb")))]
    path = write_pcap(tmp_path / "p.pcap", frames)
    ends = [off + 16 + len(f) for off, f in zip(pcap_record_offsets(frames), frames)]
    stats = ReadStats()
    seen = [stats.bytes_read for _ in iter_packets(str(path), stats)]
    assert seen == [ends[0], ends[2]]
    assert stats.bytes_read == file_size(path) == ends[-1]
    assert stats.packets == 3 and stats.decoded == 2 and stats.skipped_non_ip == 1


def test_file_size_is_the_size_on_disk(tmp_path):
    path = write_pcap(tmp_path / "s.pcap", frames_with_payloads(3))
    assert file_size(str(path)) == len(path.read_bytes())


def test_abandoning_the_iterator_closes_cleanly(tmp_path):
    path = write_pcap(tmp_path / "s.pcap", frames_with_payloads(10))
    stats = ReadStats()
    it = iter_packets(str(path), stats)
    next(it)
    it.close()
    assert stats.decoded == 1


# --- pcapng ----------------------------------------------------------------------------------------

def test_pcapng_two_interfaces_with_their_own_link_type_and_tsresol(tmp_path):
    eth_frame = ether(ipv4(tcp(1000, 2000, payload=b"on eth0")))
    raw_frame = ipv6(udp(3000, 4000, payload=b"on tun0"))
    path = write_pcapng_dpkt(
        tmp_path / "two.pcapng",
        idbs=[(1, None), (101, 9)],  # Ethernet in microseconds, raw IP in nanoseconds
        packets=[(0, 1700000000_500000, eth_frame), (1, 1700000001_250000000, raw_frame),
                 (0, 1700000002_000001, eth_frame)])
    pkts, stats = read(path)
    assert [(p[2], p[7]) for p in pkts] == [(SRC4, b"on eth0"), (SRC6, b"on tun0"), (SRC4, b"on eth0")]
    assert [p[0] for p in pkts] == [1700000000.5, 1700000001.25, 1700000002.000001]
    assert stats.bytes_read == path.stat().st_size


def test_pcapng_power_of_two_tsresol_and_tsoffset(tmp_path):
    frame = ipv4(udp(payload=b"t"))
    data = ng_shb() + ng_idb(101, tsresol=0x80 | 10, tsoffset=1000) + ng_epb(0, 3 * 1024 + 512, frame)
    (tmp_path / "t.pcapng").write_bytes(data)
    pkts, _ = read(tmp_path / "t.pcapng")
    assert pkts[0][0] == 1000 + 3.5


def test_pcapng_simple_packet_blocks_use_interface_0_and_the_last_timestamp(tmp_path):
    frame = ether(ipv4(udp(payload=b"spb")))
    data = (ng_shb() + ng_idb(1) + ng_epb(0, 42_000000, ether(ipv4(udp(payload=b"epb"))))
            + ng_spb(frame) + ng_spb(frame))
    (tmp_path / "spb.pcapng").write_bytes(data)
    pkts, _ = read(tmp_path / "spb.pcapng")
    assert [(p[0], p[7]) for p in pkts] == [(42.0, b"epb"), (42.0, b"spb"), (42.0, b"spb")]


def test_pcapng_simple_packet_block_is_cut_to_the_interface_snaplen(tmp_path):
    frame = ether(ipv4(udp(payload=b"S" * 100)))
    data = ng_shb() + ng_idb(1, snaplen=14 + 20 + 8 + 10) + ng_spb(frame)
    (tmp_path / "snap.pcapng").write_bytes(data)
    pkts, _ = read(tmp_path / "snap.pcapng")
    assert pkts[0][7] == b"S" * 10


def test_pcapng_big_endian_section_and_a_second_little_endian_section(tmp_path):
    data = (ng_shb(">") + ng_idb(113, order=">") + ng_epb(0, 7_000000, sll(ipv4(udp(payload=b"be"))), ">")
            + ng_shb("<") + ng_idb(0) + ng_epb(0, 8_000000, null(ipv4(udp(payload=b"le")), 2)))
    (tmp_path / "sections.pcapng").write_bytes(data)
    pkts, _ = read(tmp_path / "sections.pcapng")
    assert [(p[0], p[7]) for p in pkts] == [(7.0, b"be"), (8.0, b"le")]


def test_pcapng_unknown_and_statistics_blocks_are_skipped(tmp_path):
    nrb = ng_block(4, b"\x00" * 4)
    isb = ng_block(5, struct.pack("<III", 0, 0, 0))
    custom = ng_block(0x00000BAD, struct.pack("<I", 32473) + b"vendor data")
    data = ng_shb() + nrb + ng_idb(1) + custom + ng_epb(0, 1, ether(ipv4(udp(payload=b"ok")))) + isb
    (tmp_path / "misc.pcapng").write_bytes(data)
    pkts, stats = read(tmp_path / "misc.pcapng")
    assert [p[7] for p in pkts] == [b"ok"] and stats.packets == 1


def test_pcapng_interface_with_unsupported_link_type_is_fine_until_it_carries_a_packet(tmp_path):
    good = ng_epb(0, 1, ether(ipv4(udp(payload=b"ok"))))
    data = ng_shb() + ng_idb(1) + ng_idb(220) + good  # 220: USB, described but silent
    (tmp_path / "ok.pcapng").write_bytes(data)
    assert [p[7] for p in read(tmp_path / "ok.pcapng")[0]] == [b"ok"]

    (tmp_path / "bad.pcapng").write_bytes(data + ng_epb(1, 2, b"\x00" * 40))
    pkts, _, err = read_until_error(tmp_path / "bad.pcapng")
    assert isinstance(err, UnsupportedLinkType)
    assert str(err).startswith(f"{tmp_path / 'bad.pcapng'}: unsupported link type 220 on pcapng interface 1")
    assert [p[7] for p in pkts] == [b"ok"]


# --- not a capture ---------------------------------------------------------------------------------

def test_non_pcap_file_raises_naming_file_and_magic(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"GET / HTTP/1.1\r\n")
    with pytest.raises(PcapError) as exc:
        read(path)
    assert str(exc.value) == f"{path}: not a pcap or pcapng file (magic 0x47455420)"


def test_empty_file_raises_not_a_pcap(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    with pytest.raises(PcapError, match=r"empty\.pcap: not a pcap or pcapng file \(empty file\)"):
        read(path)


def test_file_shorter_than_a_magic_raises_not_a_pcap(tmp_path):
    path = tmp_path / "tiny.pcap"
    path.write_bytes(b"\xd4\xc3")
    with pytest.raises(PcapError, match=r"not a pcap or pcapng file \(magic 0xd4c3\)"):
        read(path)


def test_missing_file_raises_pcap_error(tmp_path):
    with pytest.raises(PcapError, match=r"nope\.pcap: cannot open: No such file"):
        read(tmp_path / "nope.pcap")


# --- truncated and corrupt pcap: packets before the bad record, then the offset -------------------

def test_truncated_pcap_file_header(tmp_path):
    path = tmp_path / "h.pcap"
    path.write_bytes(write_pcap(tmp_path / "full.pcap", []).read_bytes()[:20])
    pkts, _, err = read_until_error(path)
    assert pkts == [] and str(err) == f"{path}: truncated pcap file header at byte offset 0 (20 of 24 bytes)"


def test_truncated_record_header_yields_everything_before_then_names_its_offset(tmp_path):
    frames = frames_with_payloads(3)
    full = write_pcap(tmp_path / "full.pcap", frames).read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(full[:pcap_record_offsets(frames)[2] + 10])  # 10 of 16 header bytes
    pkts, stats, err = read_until_error(path)
    assert [p[7] for p in pkts] == [b"pkt0", b"pkt1"]
    off = pcap_record_offsets(frames)[2]
    assert str(err) == f"{path}: truncated packet record header at byte offset {off} (10 of 16 bytes)"
    assert stats.bytes_read == off


def test_truncated_record_body_yields_everything_before_then_names_its_offset(tmp_path):
    frames = frames_with_payloads(4)
    full = write_pcap(tmp_path / "full.pcap", frames).read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(full[:-5])
    pkts, _, err = read_until_error(path)
    off = pcap_record_offsets(frames)[3]
    assert [p[7] for p in pkts] == [b"pkt0", b"pkt1", b"pkt2"]
    assert str(err).startswith(f"{path}: truncated packet record at byte offset {off} ")


def test_absurd_caplen_is_corruption_reported_at_its_record(tmp_path):
    frames = frames_with_payloads(3)
    data = bytearray(write_pcap(tmp_path / "full.pcap", frames).read_bytes())
    off = pcap_record_offsets(frames)[1]
    struct.pack_into("<I", data, off + 8, 0x7FFF0000)
    path = tmp_path / "absurd.pcap"
    path.write_bytes(bytes(data))
    pkts, _, err = read_until_error(path)
    assert [p[7] for p in pkts] == [b"pkt0"]
    assert str(err) == (f"{path}: corrupt packet record at byte offset {off}"
                        " (captured length 2147418112 exceeds 262144)")


def test_corruption_deep_in_a_multi_chunk_file_reports_the_absolute_offset(tmp_path):
    frames = [ether(ipv4(udp(payload=b"x" * 900))) for _ in range(3000)]  # ~2.8 MiB
    data = bytearray(write_pcap(tmp_path / "full.pcap", frames).read_bytes())
    off = pcap_record_offsets(frames)[2500]
    struct.pack_into("<I", data, off + 8, 300000)
    path = tmp_path / "deep.pcap"
    path.write_bytes(bytes(data))
    pkts, _, err = read_until_error(path)
    assert len(pkts) == 2500 and f"at byte offset {off} " in str(err)


# --- truncated and corrupt pcapng -----------------------------------------------------------------

def _pcapng_three_packets() -> tuple[bytes, list[int]]:
    head = ng_shb() + ng_idb(1)
    blocks = [ng_epb(0, i, ether(ipv4(udp(payload=f"ng{i}".encode())))) for i in range(3)]
    offsets, off = [], len(head)
    for b in blocks:
        offsets.append(off)
        off += len(b)
    return head + b"".join(blocks), offsets


def test_pcapng_garbage_block_length_is_reported_at_its_offset(tmp_path):
    data, offsets = _pcapng_three_packets()
    garbage = bytearray(data)
    struct.pack_into("<I", garbage, offsets[1] + 4, 0x13)  # not a multiple of 4
    path = tmp_path / "garbage.pcapng"
    path.write_bytes(bytes(garbage))
    pkts, _, err = read_until_error(path)
    assert [p[7] for p in pkts] == [b"ng0"]
    assert str(err) == f"{path}: corrupt pcapng block at byte offset {offsets[1]} (type 0x00000006, total length 19)"


def test_pcapng_random_bytes_instead_of_a_block_are_reported_at_their_offset(tmp_path):
    data, offsets = _pcapng_three_packets()
    path = tmp_path / "noise.pcapng"
    path.write_bytes(data[:offsets[2]] + bytes(range(7, 200)) + data[offsets[2]:])
    pkts, _, err = read_until_error(path)
    assert [p[7] for p in pkts] == [b"ng0", b"ng1"]
    assert f"corrupt pcapng block at byte offset {offsets[2]} " in str(err)


def test_pcapng_trailing_length_mismatch_is_corruption(tmp_path):
    data, offsets = _pcapng_three_packets()
    bad = bytearray(data)
    end_of_second = offsets[2]
    struct.pack_into("<I", bad, end_of_second - 4, 999)
    path = tmp_path / "trail.pcapng"
    path.write_bytes(bytes(bad))
    pkts, _, err = read_until_error(path)
    assert [p[7] for p in pkts] == [b"ng0"]
    assert str(err) == (f"{path}: corrupt pcapng block at byte offset {offsets[1]}"
                        " (type 0x00000006: leading and trailing total lengths differ)")


def test_pcapng_truncated_block_is_reported_at_its_offset(tmp_path):
    data, offsets = _pcapng_three_packets()
    path = tmp_path / "cut.pcapng"
    path.write_bytes(data[:-9])
    pkts, _, err = read_until_error(path)
    assert [p[7] for p in pkts] == [b"ng0", b"ng1"]
    assert str(err).startswith(f"{path}: truncated pcapng block at byte offset {offsets[2]} ")


def test_pcapng_truncated_block_header_is_reported_at_its_offset(tmp_path):
    data, offsets = _pcapng_three_packets()
    path = tmp_path / "cut.pcapng"
    path.write_bytes(data[:offsets[2] + 6])
    pkts, _, err = read_until_error(path)
    assert len(pkts) == 2
    assert str(err) == f"{path}: truncated pcapng block header at byte offset {offsets[2]} (6 bytes)"


def test_pcapng_caplen_larger_than_its_block_is_corruption(tmp_path):
    data, offsets = _pcapng_three_packets()
    bad = bytearray(data)
    struct.pack_into("<I", bad, offsets[0] + 20, 5000)
    path = tmp_path / "caplen.pcapng"
    path.write_bytes(bytes(bad))
    pkts, _, err = read_until_error(path)
    assert pkts == [] and str(err) == (f"{path}: corrupt packet block at byte offset {offsets[0]}"
                                       " (captured length 5000 exceeds the block)")


def test_pcapng_packet_on_an_undescribed_interface_is_corruption(tmp_path):
    data = ng_shb() + ng_idb(1) + ng_epb(3, 1, ether(ipv4(udp())))
    path = tmp_path / "iface.pcapng"
    path.write_bytes(data)
    _, _, err = read_until_error(path)
    assert str(err) == (f"{path}: packet block at byte offset {len(ng_shb() + ng_idb(1))} names"
                        " interface 3, but only 1 are described")


def test_pcapng_bad_byte_order_magic_is_corruption(tmp_path):
    shb = bytearray(ng_shb())
    shb[8:12] = b"\x01\x02\x03\x04"
    path = tmp_path / "bom.pcapng"
    path.write_bytes(bytes(shb))
    _, _, err = read_until_error(path)
    assert str(err) == f"{path}: corrupt section header block at byte offset 0 (byte-order magic 0x01020304)"


def test_pcapng_interface_block_too_short_for_its_fields_is_corruption(tmp_path):
    path = tmp_path / "idb.pcapng"
    path.write_bytes(ng_shb() + ng_block(1, struct.pack("<I", 1)))
    _, _, err = read_until_error(path)
    assert str(err) == (f"{path}: corrupt interface description block at byte offset {len(ng_shb())}"
                        " (total length 16)")


# --- robustness ------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(linktype=st.sampled_from([0, 1, 12, 101, 108, 113, 276]), frame=st.binary(max_size=120))
def test_arbitrary_frame_bytes_never_raise(tmp_path, linktype, frame):
    path = write_pcap(tmp_path / "fuzz.pcap", [frame, frame[:20], frame + frame], linktype=linktype)
    pkts, stats = read(path)
    assert stats.packets == 3
    for p in pkts:
        assert p[1] in (6, 17) and len(p[2]) in (4, 16) and len(p[4]) == len(p[2])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=400), noise=st.binary(max_size=64))
def test_any_damaged_capture_ends_in_pcap_error_or_cleanly(tmp_path, cut, noise):
    data, _ = _pcapng_three_packets()
    pcap = write_pcap(tmp_path / "f.pcap", frames_with_payloads(3)).read_bytes()
    for name, blob in (("a.pcapng", data), ("a.pcap", pcap)):
        path = tmp_path / name
        path.write_bytes(blob[:cut] + noise)
        try:
            read(path)
        except PcapError:
            pass


def test_pcapng_section_header_too_short_for_its_fields_is_corruption(tmp_path):
    path = tmp_path / "shb.pcapng"
    path.write_bytes(ng_block(0x0A0D0D0A, struct.pack("<I", 0x1A2B3C4D)))
    _, _, err = read_until_error(path)
    assert str(err) == f"{path}: corrupt section header block at byte offset 0 (total length 16)"


def test_pcapng_unsupported_major_version_is_reported(tmp_path):
    shb = bytearray(ng_shb())
    struct.pack_into("<H", shb, 12, 2)
    path = tmp_path / "v2.pcapng"
    path.write_bytes(bytes(shb))
    _, _, err = read_until_error(path)
    assert str(err) == f"{path}: unsupported pcapng version 2 at byte offset 0"
