"""Recognisers of other protocols (detect/other.py): DNS, QUIC long headers, STUN.

Hand-made bytes for these parser unit tests; the real-traffic check (every DNS flow of the
corpus is normal_likely/dns) is at the end."""

import struct
from pathlib import Path

import pytest
from detect_builders import evidence, features, rand, reason, udp

from msewatch.detect.other import dns_message, other_protocols, quic_long_header, stun_message
from msewatch.detect.params import DetectParams
from msewatch.evidence import FAMILY_NEGATIVE

P = DetectParams()


def dns_query(name: bytes = b"\x07example\x03org\x00", qtype: int = 1, qclass: int = 1, flags: int = 0x0100) -> bytes:
    return struct.pack(">HHHHHH", 0xBEEF, flags, 1, 0, 0, 0) + name + struct.pack(">HH", qtype, qclass)


def dns_answer() -> bytes:
    q = dns_query(flags=0x8180)
    return q[:6] + b"\x00\x01" + q[8:] + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\x5d\xb8\xd8\x22"


def test_a_dns_query_and_its_answer_parse():
    assert dns_message(dns_query(), whole=True) == "query"
    assert dns_message(dns_answer(), whole=True) == "response"


def test_a_dns_message_cut_by_the_snaplen_still_parses_when_whole_is_not_claimed():
    q = dns_query(b"\x0bsubdomain-1\x07example\x03org\x00")[:20]
    assert dns_message(q, whole=True) is None
    assert dns_message(q, whole=False) == "query"


@pytest.mark.parametrize("head", [
    b"d1:ad2:id20:" + b"A" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe",  # DHT
    bytes.fromhex("4100d49f97a1ea94000000000000000007e70000"),  # uTP SYN
    struct.pack(">QII", 0x41727101980, 0, 1234),  # BEP 15 connect
    b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\n",
])
def test_p2p_datagrams_are_not_dns(head):
    assert dns_message(head, whole=True) is None
    assert dns_message(head, whole=False) is None


def test_bad_counts_opcodes_labels_or_classes_are_not_dns():
    assert dns_message(dns_query(flags=0x7800), whole=True) is None  # opcode 15
    assert dns_message(dns_query()[:4] + b"\x00\x02" + dns_query()[6:], whole=True) is None  # two questions
    assert dns_message(dns_query(b"\x07exa\x01ple\x03org\x00"), whole=True) is None  # control byte in a label
    assert dns_message(dns_query(qclass=77), whole=True) is None
    assert dns_message(dns_query(qclass=0x8001), whole=True) == "query"  # mDNS unicast-response bit


def test_random_datagrams_are_not_dns():
    assert sum(dns_message(rand(60, s), whole=True) is not None for s in range(2000)) == 0


def test_dns_over_udp_and_tcp_is_negative_evidence_with_its_protocol():
    o = features(other_protocols(udp([("o", dns_query()), ("r", dns_answer())], resp=("10.0.0.53", 53)), P))
    assert set(o) == {"dns_like"} and o["dns_like"].family == FAMILY_NEGATIVE and o["dns_like"].protocol == "dns"
    assert reason(o["dns_like"], "dns_orig") == "query" and reason(o["dns_like"], "dns_resp") == "response"
    q = dns_query()
    tcp = evidence([("o", struct.pack(">H", len(q)) + q)], resp=("10.0.0.53", 53))
    assert set(features(other_protocols(tcp, P))) == {"dns_like"}
    # a TCP length prefix that disagrees with the segment is not DNS
    bad = evidence([("o", struct.pack(">H", 5) + q)], resp=("10.0.0.53", 53))
    assert other_protocols(bad, P) == []


def quic_initial(version: int = 1) -> bytes:
    dcid, scid = rand(8, 1), rand(8, 2)
    return bytes([0xC3]) + version.to_bytes(4, "big") + bytes([8]) + dcid + bytes([8]) + scid + b"\x00" + rand(1150, 3)


def test_quic_long_headers_of_known_versions_parse():
    assert quic_long_header(quic_initial()) == "0x00000001"
    assert quic_long_header(quic_initial(0x6B3343CF)) == "0x6b3343cf"
    assert quic_long_header(quic_initial(0xFF00001D)) == "0xff00001d"
    vn = bytes([0x80]) + b"\x00\x00\x00\x00" + b"\x08" + rand(8) + b"\x08" + rand(8) + b"\x00\x00\x00\x01"
    assert quic_long_header(vn) == "negotiation"


def test_unknown_versions_short_headers_and_long_ids_are_not_quic():
    assert quic_long_header(quic_initial(0x12345678)) is None
    assert quic_long_header(b"\x43" + quic_initial()[1:]) is None  # short header
    assert quic_long_header(bytes([0xC3, 0, 0, 0, 1, 21]) + rand(40)) is None  # DCID > 20
    assert quic_long_header(bytes.fromhex("4100d49f97a1ea94000000000000000007e70000")) is None  # uTP SYN


def test_quic_is_negative_evidence():
    o = features(other_protocols(udp([("o", quic_initial())], resp=("192.0.2.1", 443)), P))
    assert set(o) == {"quic_like"} and o["quic_like"].protocol == "quic"


def test_a_stun_binding_request_parses_and_random_bytes_do_not():
    attrs = struct.pack(">HH", 0x8022, 4) + b"test"
    req = struct.pack(">HH", 0x0001, len(attrs)) + b"\x21\x12\xa4\x42" + rand(12) + attrs
    assert stun_message(req, len(req)) and not stun_message(req, len(req) + 4)
    assert not any(stun_message(rand(28, s), 28) for s in range(1000))
    o = features(other_protocols(udp([("o", req)], resp=("192.0.2.1", 3478)), P))
    assert set(o) == {"stun_like"} and o["stun_like"].protocol == "stun"


def test_p2p_flows_of_the_detector_builders_get_no_other_protocol():
    from detect_builders import mse_packets

    assert other_protocols(evidence(mse_packets()), P) == []


CORPUS = Path(__file__).parent.parent / "data" / "corpus"


@pytest.mark.skipif(not (CORPUS / "dns.pcap").is_file(), reason="no corpus")
def test_every_dns_flow_of_the_corpus_is_normal_and_says_dns():
    from msewatch.engine import analyze_pcaps
    from msewatch.verdict import FlowVerdict

    out = [v for v in analyze_pcaps([str(CORPUS / "dns.pcap")]) if isinstance(v, FlowVerdict)]
    dns = [v for v in out if 53 in (v.key.resp_p, v.key.orig_p)]
    assert len(dns) >= 20
    assert {(v.label, v.protocol) for v in dns} == {("normal_likely", "dns")}
