"""Header decoding of the pcap source: link types, VLANs, IPv4/IPv6 details, TCP/UDP, and the
counters for everything that isn't a decodable TCP/UDP packet."""

from __future__ import annotations

import struct

import pytest
from _pcap_builders import (
    ACK, DST4, DST6, FIN, PSH, RST, SRC4, SRC6, SYN,
    ether, ext_header, frag_header, ipv4, ipv6, null, sll, sll2, tcp, udp, write_pcap,
)

from msewatch.sources.pcap import (
    PcapError, ReadStats, UnsupportedLinkType, iter_packets,
)


def read(path):
    stats = ReadStats()
    return list(iter_packets(str(path), stats)), stats


def read_frames(tmp_path, frames, linktype=1, **kw):
    return read(write_pcap(tmp_path / "c.pcap", frames, linktype=linktype, **kw))


def assert_partition(stats: ReadStats) -> None:
    assert stats.packets == (stats.decoded + stats.skipped_bad_header + stats.skipped_non_ip
                             + stats.skipped_other_proto + stats.fragments)


# --- TCP / UDP over Ethernet -----------------------------------------------------------------------

def test_ethernet_ipv4_tcp_yields_ts_addresses_ports_flags_and_payload(tmp_path):
    frame = ether(ipv4(tcp(51413, 6881, SYN | ACK, b"\x13BitTorrent protocol")))
    pkts, stats = read_frames(tmp_path, [(1700000000.25, frame)])
    assert pkts == [(1700000000.25, 6, SRC4, 51413, DST4, 6881, SYN | ACK, b"\x13BitTorrent protocol", 20)]
    assert (stats.packets, stats.decoded) == (1, 1)


@pytest.mark.parametrize("flags", [SYN, SYN | ACK, ACK, FIN | ACK, RST, RST | ACK, PSH | ACK, 0xFF])
def test_tcp_flags_are_the_raw_flags_byte(tmp_path, flags):
    pkts, _ = read_frames(tmp_path, [ether(ipv4(tcp(flags=flags)))])
    assert pkts[0][6] == flags


def test_udp_yields_zero_flags_and_the_datagram_payload(tmp_path):
    pkts, _ = read_frames(tmp_path, [ether(ipv4(udp(40000, 6881, b"d1:ad2:id20:")))])
    assert pkts[0][1:] == (17, SRC4, 40000, DST4, 6881, 0, b"d1:ad2:id20:", 12)


def test_tcp_options_are_not_part_of_the_payload(tmp_path):
    seg = tcp(payload=b"data", opts=b"\x02\x04\x05\xb4\x01\x01\x04\x02")  # MSS, NOP NOP SACK-perm
    pkts, _ = read_frames(tmp_path, [ether(ipv4(seg))])
    assert pkts[0][7] == b"data"


def test_ipv4_options_move_the_transport_header(tmp_path):
    pkt = ipv4(tcp(1234, 80, ACK, b"after options"), opts=b"\x94\x04\x00\x00")  # router alert
    assert pkt[0] == 0x46
    pkts, _ = read_frames(tmp_path, [ether(pkt)])
    assert pkts[0][3] == 1234 and pkts[0][5] == 80 and pkts[0][7] == b"after options"


@pytest.mark.parametrize("payload", [b"", b"x", b"abcdef"])
def test_ethernet_padding_never_leaks_into_the_payload(tmp_path, payload):
    frames = [ether(ipv4(tcp(flags=ACK, payload=payload)), pad_to=60),
              ether(ipv4(udp(payload=payload)), pad_to=60),
              ether(ipv6(udp(payload=payload)), etype=0x86DD, pad_to=80)]
    assert len(frames[0]) == 60
    pkts, _ = read_frames(tmp_path, frames)
    assert [p[7] for p in pkts] == [payload, payload, payload]
    assert [p[8] for p in pkts] == [len(payload)] * 3


def test_udp_length_shorter_than_ip_length_bounds_the_payload(tmp_path):
    ip = bytearray(ipv4(udp(payload=b"abcdef")))
    struct.pack_into("!H", ip, 24, 8 + 2)  # UDP length says 2 payload bytes
    pkts, _ = read_frames(tmp_path, [ether(bytes(ip))])
    assert pkts[0][7] == b"ab" and pkts[0][8] == 2


def test_payload_is_clipped_to_what_the_snaplen_captured(tmp_path):
    frame = ether(ipv4(tcp(payload=b"A" * 1000)))[:14 + 20 + 20 + 100]
    pkts, stats = read_frames(tmp_path, [frame])
    assert pkts[0][7] == b"A" * 100 and stats.decoded == 1


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_the_length_comes_from_the_headers_when_the_snaplen_cut_the_payload(tmp_path, version, transport):
    """snaplen 96: the head is what was captured, the size what the headers say (the evidence
    contract: sizes are always header lengths)."""
    l4 = tcp(payload=b"C" * 600, opts=b"\x01" * 12) if transport == "tcp" else udp(payload=b"C" * 600)
    frame = ether(ipv4(l4)) if version == 4 else ether(ipv6(l4), etype=0x86DD)
    pkts, stats = read_frames(tmp_path, [frame[:96]])
    hdr = 14 + (20 if version == 4 else 40) + (32 if transport == "tcp" else 8)
    assert stats.decoded == 1
    assert pkts[0][7] == b"C" * (96 - hdr)
    assert pkts[0][8] == 600


def test_the_length_of_a_whole_packet_is_its_payload_length_also_on_the_fast_path(tmp_path):
    frames = [ether(ipv4(tcp(payload=b"D" * 700))), ether(ipv4(udp(payload=b"E" * 70))),
              ether(ipv4(tcp(payload=b"F" * 700)))[:80], ether(ipv4(udp(payload=b"G" * 70)))[:50]]
    pkts, _ = read_frames(tmp_path, frames)
    assert [(len(p[7]), p[8]) for p in pkts] == [(700, 700), (70, 70), (80 - 54, 700), (50 - 42, 70)]


def test_ipv4_total_length_zero_from_tso_uses_the_captured_length(tmp_path):
    ip = bytearray(ipv4(tcp(payload=b"B" * 3000)))
    struct.pack_into("!H", ip, 2, 0)
    pkts, _ = read_frames(tmp_path, [ether(bytes(ip))])
    assert pkts[0][7] == b"B" * 3000 and pkts[0][8] == 3000


# --- VLAN ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("vlans", [(0x8100,), (0x88A8, 0x8100), (0x9100, 0x8100), (0x8100, 0x8100, 0x8100)],
                         ids=["802.1Q", "QinQ-88a8", "QinQ-9100", "triple"])
def test_vlan_tags_are_skipped_for_ipv4_and_ipv6(tmp_path, vlans):
    frames = [ether(ipv4(tcp(payload=b"v4")), vlans=vlans),
              ether(ipv6(udp(payload=b"v6")), etype=0x86DD, vlans=vlans)]
    pkts, stats = read_frames(tmp_path, frames)
    assert [(p[2], p[7]) for p in pkts] == [(SRC4, b"v4"), (SRC6, b"v6")]
    assert stats.decoded == 2


def test_vlan_tag_cut_short_is_a_bad_header(tmp_path):
    frame = ether(b"", vlans=(0x8100,))[:14 + 2]
    _, stats = read_frames(tmp_path, [frame])
    assert stats.skipped_bad_header == 1


def test_vlan_tagged_arp_is_non_ip(tmp_path):
    _, stats = read_frames(tmp_path, [ether(b"\x00" * 28, etype=0x0806, vlans=(0x8100,))])
    assert stats.skipped_non_ip == 1


# --- other link types ------------------------------------------------------------------------------

def test_linux_cooked_sll_is_decoded(tmp_path):
    frames = [sll(ipv4(tcp(payload=b"sll4"))), sll(ipv6(tcp(payload=b"sll6")), proto=0x86DD),
              sll(b"\x00" * 28, proto=0x0806)]
    pkts, stats = read_frames(tmp_path, frames, linktype=113)
    assert [(p[2], p[7]) for p in pkts] == [(SRC4, b"sll4"), (SRC6, b"sll6")]
    assert stats.skipped_non_ip == 1


def test_linux_cooked_sll_with_vlan_tag_is_decoded(tmp_path):
    # libpcap re-inserts the VLAN tag after the cooked header: protocol 0x8100, TCI, inner type.
    frame = sll(struct.pack("!HH", 7, 0x0800) + ipv4(udp(payload=b"tagged")), proto=0x8100)
    pkts, _ = read_frames(tmp_path, [frame], linktype=113)
    assert pkts[0][7] == b"tagged"


def test_linux_cooked_sll2_is_decoded(tmp_path):
    frames = [sll2(ipv4(udp(payload=b"sll2-4"))), sll2(ipv6(udp(payload=b"sll2-6")), proto=0x86DD)]
    pkts, _ = read_frames(tmp_path, frames, linktype=276)
    assert [(p[2], p[7]) for p in pkts] == [(SRC4, b"sll2-4"), (SRC6, b"sll2-6")]


@pytest.mark.parametrize("linktype", [101, 12, 14, 228, 229])
def test_raw_ip_link_types_take_the_version_from_the_ip_header(tmp_path, linktype):
    pkts, _ = read_frames(tmp_path, [ipv4(tcp(payload=b"raw4")), ipv6(tcp(payload=b"raw6"))],
                          linktype=linktype)
    assert [(p[2], p[7]) for p in pkts] == [(SRC4, b"raw4"), (SRC6, b"raw6")]


def test_raw_ip_with_version_5_is_a_bad_header(tmp_path):
    ip = bytearray(ipv4(tcp()))
    ip[0] = 0x55
    _, stats = read_frames(tmp_path, [bytes(ip)], linktype=101)
    assert stats.skipped_bad_header == 1


@pytest.mark.parametrize("linktype", [0, 108])
@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian-AF", "big-endian-AF"])
@pytest.mark.parametrize("af,version", [(2, 4), (24, 6), (28, 6), (30, 6)])
def test_null_and_loop_read_bsd_af_values_in_either_byte_order(tmp_path, linktype, order, af, version):
    ip = ipv4(udp(payload=b"lo")) if version == 4 else ipv6(udp(payload=b"lo"))
    pkts, _ = read_frames(tmp_path, [null(ip, af, order)], linktype=linktype)
    assert pkts[0][2] == (SRC4 if version == 4 else SRC6) and pkts[0][7] == b"lo"


def test_null_with_unknown_af_is_non_ip(tmp_path):
    _, stats = read_frames(tmp_path, [null(ipv4(udp()), 7)], linktype=0)
    assert stats.skipped_non_ip == 1


@pytest.mark.parametrize("linktype", [105, 127, 9, 147])
def test_unsupported_link_type_raises_one_line_naming_file_and_number(tmp_path, linktype):
    path = write_pcap(tmp_path / "wifi.pcap", [b"\x00" * 40], linktype=linktype)
    with pytest.raises(UnsupportedLinkType) as exc:
        read(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: unsupported link type {linktype} ") and "\n" not in msg
    assert isinstance(exc.value, PcapError)


def test_link_type_word_fcs_bits_are_ignored(tmp_path):
    path = write_pcap(tmp_path / "fcs.pcap", [ether(ipv4(udp(payload=b"x"))) + b"\xde\xad\xbe\xef"])
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 20, 1 | (1 << 26) | (4 << 28))  # Ethernet, FCS present, 4 bytes
    path.write_bytes(bytes(data))
    pkts, _ = read(path)
    assert pkts[0][7] == b"x"


# --- IPv4 fragments --------------------------------------------------------------------------------

def test_ipv4_fragments_first_with_mf_and_later_ones_are_counted_and_skipped(tmp_path):
    frames = [ether(ipv4(udp(payload=b"A" * 64), off=0x2000)),        # first fragment, MF
              ether(ipv4(b"B" * 64, off=0x2000 | 9, p=17)),         # middle fragment
              ether(ipv4(b"C" * 16, off=18, p=17)),                 # last fragment, MF clear
              ether(ipv4(udp(payload=b"whole"), off=0x4000))]       # DF only: not a fragment
    pkts, stats = read_frames(tmp_path, frames)
    assert stats.fragments == 3
    assert [p[7] for p in pkts] == [b"whole"]
    assert_partition(stats)


# --- IPv6 ------------------------------------------------------------------------------------------

def test_ipv6_tcp_yields_16_byte_addresses(tmp_path):
    pkts, _ = read_frames(tmp_path, [ether(ipv6(tcp(7000, 443, SYN)), etype=0x86DD)])
    assert pkts[0][1:7] == (6, SRC6, 7000, DST6, 443, SYN)


def test_ipv6_hop_by_hop_routing_and_destination_options_are_skipped(tmp_path):
    chain = ext_header(43, 1) + ext_header(60, 3) + ext_header(17, 2)  # HBH -> routing -> dstopts -> UDP
    frame = ether(ipv6(udp(1111, 2222, b"behind ext"), ext=chain, nxt=0), etype=0x86DD)
    pkts, stats = read_frames(tmp_path, [frame])
    assert pkts[0][1:] == (17, SRC6, 1111, DST6, 2222, 0, b"behind ext", 10)


def test_ipv6_authentication_header_is_skipped(tmp_path):
    ah = bytes([6, 4]) + b"\x00" * 22  # payload len 4 -> (4+2)*4 = 24 bytes
    pkts, _ = read_frames(tmp_path, [ether(ipv6(tcp(payload=b"ah"), ext=ah, nxt=51), etype=0x86DD)])
    assert pkts[0][7] == b"ah"


@pytest.mark.parametrize("offset_units,more", [(0, True), (5, True), (5, False)])
def test_ipv6_fragments_are_counted_and_skipped(tmp_path, offset_units, more):
    frame = ether(ipv6(udp(payload=b"frag"), ext=frag_header(17, offset_units, more), nxt=44),
                  etype=0x86DD)
    pkts, stats = read_frames(tmp_path, [frame])
    assert pkts == [] and stats.fragments == 1


def test_ipv6_atomic_fragment_is_a_whole_datagram(tmp_path):
    frame = ether(ipv6(udp(payload=b"atomic"), ext=frag_header(17, 0, False), nxt=44), etype=0x86DD)
    pkts, stats = read_frames(tmp_path, [frame])
    assert pkts[0][7] == b"atomic" and stats.fragments == 0


def test_ipv6_extension_header_past_the_packet_is_a_bad_header(tmp_path):
    frame = ether(ipv6(b"", ext=bytes([17, 10]) + b"\x00" * 6, nxt=0), etype=0x86DD)
    _, stats = read_frames(tmp_path, [frame])
    assert stats.skipped_bad_header == 1


# --- skipped, with the reason counted --------------------------------------------------------------

def test_other_ip_protocols_are_counted_as_other_proto(tmp_path):
    icmp = ipv4(b"\x08\x00\x00\x00\x00\x01\x00\x01", p=1)
    icmp6 = ipv6(b"\x80\x00\x00\x00\x00\x01\x00\x01", nxt=58)
    esp6 = ipv6(b"\x00" * 16, nxt=50)
    _, stats = read_frames(tmp_path, [ether(icmp), ether(icmp6, etype=0x86DD), ether(esp6, etype=0x86DD)])
    assert stats.skipped_other_proto == 3 and stats.decoded == 0


def test_non_ip_ethertypes_are_counted_as_non_ip(tmp_path):
    frames = [ether(b"\x00" * 28, etype=0x0806), ether(b"\x00" * 46, etype=0x88CC),
              ether(b"\x00" * 46, etype=0x0026)]  # ARP, LLDP, 802.3 length field
    _, stats = read_frames(tmp_path, frames)
    assert stats.skipped_non_ip == 3


def _mutate(data: bytes, at: int, value: int) -> bytes:
    b = bytearray(data)
    b[at] = value
    return bytes(b)


BAD_FRAMES = {
    "ethernet-shorter-than-header": ether(ipv4(tcp()))[:10],
    "ipv4-shorter-than-20": ether(ipv4(tcp()))[:14 + 12],
    "ihl-below-5": ether(_mutate(ipv4(tcp()), 0, 0x44)),
    "ihl-past-capture": ether(_mutate(ipv4(tcp()), 0, 0x4F))[:14 + 40],
    "total-length-below-ihl": ether(_mutate(_mutate(ipv4(tcp()), 2, 0), 3, 12)),
    "tcp-data-offset-below-5": ether(_mutate(ipv4(tcp(payload=b"x")), 20 + 12, 0x40)),
    "tcp-data-offset-past-packet": ether(_mutate(ipv4(tcp(payload=b"x")), 20 + 12, 0xF0)),
    "tcp-header-cut": ether(ipv4(tcp()))[:14 + 20 + 12],
    "udp-header-cut": ether(ipv4(udp()))[:14 + 20 + 6],
    "udp-length-below-8": ether(_mutate(ipv4(udp(payload=b"abc")), 20 + 5, 3)),
    "ethertype-ipv4-version-6": ether(ipv6(tcp()), etype=0x0800),
    "ethertype-ipv6-version-4": ether(ipv4(tcp()) + b"\x00" * 20, etype=0x86DD),
    "ipv6-shorter-than-40": ether(ipv6(tcp()), etype=0x86DD)[:14 + 30],
    "sll-shorter-than-header": None,
}


@pytest.mark.parametrize("case", [k for k, v in BAD_FRAMES.items() if v is not None])
def test_bad_headers_are_counted_and_skipped_never_raised(tmp_path, case):
    good = ether(ipv4(udp(payload=b"after")))
    pkts, stats = read_frames(tmp_path, [BAD_FRAMES[case], good])
    assert stats.skipped_bad_header == 1, stats
    assert [p[7] for p in pkts] == [b"after"]
    assert_partition(stats)


@pytest.mark.parametrize("linktype,frame", [(113, b"\x00" * 15), (276, b"\x00" * 19), (0, b"\x02\x00"),
                                            (101, b"\x45\x00")])
def test_frames_shorter_than_their_link_header_are_bad_headers(tmp_path, linktype, frame):
    _, stats = read_frames(tmp_path, [frame], linktype=linktype)
    assert stats.skipped_bad_header == 1


def test_zero_length_record_is_a_bad_header(tmp_path):
    _, stats = read_frames(tmp_path, [b""])
    assert (stats.packets, stats.skipped_bad_header) == (1, 1)
