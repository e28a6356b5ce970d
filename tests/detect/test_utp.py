import struct

from detect_builders import features, rand, reason, udp

from msewatch.detect.params import DetectParams
from msewatch.detect.utp import ST_DATA, ST_STATE, ST_SYN, parse_utp, utp
from msewatch.evidence import FAMILY_PLAINTEXT

P = DetectParams()
RECV_ID = 0x1234
SYN_SEQ = 0x0101
RESP_SEQ = 0x7777


def hdr(typ: int, conn_id: int, seq: int, ack: int, *, ts: int = 123456789, tsd: int = 0,
        wnd: int = 1 << 20, ext: int = 0) -> bytes:
    """BEP 29 header: type<<4|1, extension, connection_id, ts, ts_diff, wnd, seq, ack."""
    return struct.pack(">BBHIIIHH", typ << 4 | 1, ext, conn_id, ts, tsd, wnd, seq, ack)


# libtorrent's SYN: connection_id = recv_id, wnd 0, ack 0, no payload
SYN = hdr(ST_SYN, RECV_ID, SYN_SEQ, 0, wnd=0)
# responder: connection_id = the SYN's id, acks the SYN's seq_nr
STATE = hdr(ST_STATE, RECV_ID, RESP_SEQ, SYN_SEQ, tsd=5000)


def data(payload: bytes, seq: int = SYN_SEQ + 1) -> bytes:
    # initiator's packets after the SYN use recv_id + 1
    return hdr(ST_DATA, RECV_ID + 1, seq, RESP_SEQ, tsd=4000) + payload


def test_syn_parses_as_utp_header():
    h = parse_utp(SYN, P)
    assert h is not None and h.type == ST_SYN and h.conn_id == RECV_ID and h.payload_off == 20


def test_single_syn_is_weak_utp_header_only():
    obs = utp(udp([("o", SYN)]), P)
    f = features(obs)
    assert set(f) == {"utp_header"}
    o = f["utp_header"]
    assert o.value == P.utp_header_value and o.protocol == "utp" and o.family == FAMILY_PLAINTEXT
    assert reason(o, "orig_types") == "syn"


def test_syn_state_data_exchange_is_coherent():
    ev = udp([("o", SYN), ("r", STATE), ("o", data(b"\x13BitTorrent protocol" + bytes(48)))])
    f = features(utp(ev, P))
    assert set(f) == {"utp_header", "utp_coherent"}
    c = f["utp_coherent"]
    assert c.value == 1.0
    assert reason(c, "ack_matches_syn") == "1"
    assert reason(c, "orig_send_id") == "recv_id+1"
    assert reason(c, "payload_bt_handshake") == "1"
    assert reason(f["utp_header"], "seq_progress") == "1"


def test_utp_carrying_mse_is_flagged_payload_random():
    ev = udp([("o", SYN), ("r", STATE), ("o", data(rand(296)))])
    c = features(utp(ev, P))["utp_coherent"]
    assert reason(c, "payload_random") == "1"


def test_reply_with_unrelated_connection_id_is_not_coherent():
    bad_state = hdr(ST_STATE, RECV_ID + 7, RESP_SEQ, SYN_SEQ)
    f = features(utp(udp([("o", SYN), ("r", bad_state)]), P))
    assert set(f) == {"utp_header"}


def test_midstream_exchange_pairs_ids_off_by_one():
    ev = udp([("o", data(rand(100), seq=10)), ("r", hdr(ST_STATE, RECV_ID, RESP_SEQ, 10)),
              ("o", data(rand(100, seed=2), seq=11))])
    c = features(utp(ev, P))["utp_coherent"]
    assert reason(c, "syn") == "0" and reason(c, "conn_id_pair") == "1"


def test_syn_with_payload_or_delay_sample_is_rejected():
    assert parse_utp(SYN + b"x", P) is None
    assert parse_utp(hdr(ST_SYN, RECV_ID, 1, 0, tsd=99), P) is None


def test_version_type_and_extension_limits():
    assert parse_utp(b"\x42" + SYN[1:], P) is None  # version 2
    assert parse_utp(b"\x51" + SYN[1:], P) is None  # type 5
    assert parse_utp(SYN[:1] + b"\x03" + SYN[2:], P) is None  # extension 3


def test_selective_ack_extension_is_walked():
    sack = hdr(ST_STATE, RECV_ID, RESP_SEQ, SYN_SEQ, ext=1) + b"\x00\x04" + b"\x01\x00\x00\x00"
    h = parse_utp(sack, P)
    assert h is not None and h.payload_off == 26


def test_more_than_four_extensions_are_rejected():
    chain = b"".join(b"\x02\x04\x00\x00\x00\x00" for _ in range(4)) + b"\x00\x04\x00\x00\x00\x00"
    assert parse_utp(hdr(ST_STATE, RECV_ID, 1, 1, ext=2) + chain, P) is None
    ok_chain = b"".join(b"\x02\x04\x00\x00\x00\x00" for _ in range(3)) + b"\x00\x04\x00\x00\x00\x00"
    assert parse_utp(hdr(ST_STATE, RECV_ID, 1, 1, ext=2) + ok_chain, P) is not None


# A 20-byte DNS query whose ID starts 0x41 with NS/AR counts 0 passes a naive SYN check
# (Xray-core PR #6735): ID 0x4100, flags 0x0100, QD 1, AN 0, NS 0, AR 0, QNAME "\x00", A, IN ...
DNS_20 = bytes.fromhex("4100 0100 0001 0000 0000 0000 00 0001 0001 000000".replace(" ", ""))


def test_dns_query_lookalike_on_port_53_is_excluded():
    assert len(DNS_20) == 20
    assert parse_utp(DNS_20, P) is not None  # the shape alone would pass: the port saves us
    ev = udp([("o", DNS_20)], resp=("192.0.2.53", 53))
    assert utp(ev, P) == []


def test_dns_lookalike_on_a_high_port_is_at_most_weak_header_evidence():
    ev = udp([("o", DNS_20)], resp=("192.0.2.53", 40000))
    assert {o.feature for o in utp(ev, P)} <= {"utp_header"}


def test_teredo_and_capwap_ports_are_excluded():
    for port in (3544, 5246, 5247):
        assert utp(udp([("o", SYN), ("r", STATE)], resp=("192.0.2.9", port)), P) == []


def test_one_non_utp_datagram_disqualifies_the_flow():
    ev = udp([("o", SYN), ("r", rand(60))])
    assert utp(ev, P) == []


def test_random_datagrams_are_not_utp():
    for seed in range(50):
        assert utp(udp([("o", rand(120, seed=seed))]), P) == []
