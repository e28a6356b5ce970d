import struct

from detect_builders import evidence, reason, udp

from msewatch.detect.params import DetectParams
from msewatch.detect.tracker import PROTOCOL_ID, tracker
from msewatch.evidence import FAMILY_PLAINTEXT

P = DetectParams()
TID = 0xCAFE0001
CONN_ID = 0x1122334455667788

CONNECT = struct.pack(">QII", PROTOCOL_ID, 0, TID)
CONNECT_REPLY = struct.pack(">IIQ", 0, TID, CONN_ID)
ANNOUNCE = struct.pack(">QII20s20sQQQIIIiH", CONN_ID, 1, TID + 1, b"\x11" * 20, b"-TR3000-" + b"1" * 12,
                       0, 1000, 0, 2, 0, 42, -1, 51413)


def test_bep15_packet_sizes():
    assert len(CONNECT) == 16 and len(CONNECT_REPLY) == 16 and len(ANNOUNCE) == 98


def test_connect_request_alone_is_udp_tracker():
    (o,) = tracker(udp([("o", CONNECT)], resp=("198.51.100.1", 6969)), P)
    assert o.feature == "udp_tracker" and o.protocol == "tracker" and o.family == FAMILY_PLAINTEXT
    assert o.value == P.udp_tracker_value and reason(o, "connect") == "1"


def test_connect_reply_and_announce_strengthen_the_match():
    ev = udp([("o", CONNECT), ("r", CONNECT_REPLY), ("o", ANNOUNCE)])
    (o,) = tracker(ev, P)
    assert o.value == 1.0
    assert reason(o, "connect_reply") == "1" and reason(o, "announce") == "1"


def test_reply_with_another_transaction_id_is_not_a_reply():
    ev = udp([("o", CONNECT), ("r", struct.pack(">IIQ", 0, TID + 9, CONN_ID))])
    (o,) = tracker(ev, P)
    assert o.value == P.udp_tracker_value and reason(o, "connect_reply") is None


def test_scrape_after_connect_counts_hashes():
    scrape = struct.pack(">QII", CONN_ID, 2, TID + 2) + b"\x22" * 40
    (o,) = tracker(udp([("o", CONNECT), ("r", CONNECT_REPLY), ("o", scrape)]), P)
    assert reason(o, "scrape_hashes") == "2"


def test_wrong_magic_or_length_is_not_a_tracker():
    assert tracker(udp([("o", struct.pack(">QII", PROTOCOL_ID + 1, 0, TID))]), P) == []
    assert tracker(udp([("o", CONNECT + b"\x00")]), P) == []
    assert tracker(udp([("o", struct.pack(">QII", PROTOCOL_ID, 1, TID))]), P) == []


ANNOUNCE_GET = (b"GET /announce?info_hash=%d2GN%86%c9%5b%19%b8%bc%fd%b9%2b%c1%2c%9dDf%7c%fa6"
                b"&peer_id=-TR3000-k8hj0wgej6ch&port=51413&uploaded=0&downloaded=0&left=0"
                b"&numwant=80&key=1f2e3d&compact=1&supportcrypto=1&event=started HTTP/1.1\r\n"
                b"Host: tracker.example.org:6969\r\n\r\n")


def test_http_announce_is_http_tracker_with_client():
    (o,) = tracker(evidence([("o", ANNOUNCE_GET)]), P)
    assert o.feature == "http_tracker" and o.protocol == "tracker"
    assert reason(o, "request") == "announce"
    assert reason(o, "peer_id") == "1" and reason(o, "compact") == "1"
    assert reason(o, "supportcrypto") == "1"
    assert reason(o, "client") == "-TR3000-"


def test_http_scrape_is_http_tracker():
    (o,) = tracker(evidence([("o", b"GET /scrape?info_hash=%aa%bb HTTP/1.0\r\n\r\n")]), P)
    assert reason(o, "request") == "scrape"


def test_plain_http_get_and_webseed_are_not_trackers():
    assert tracker(evidence([("o", b"GET /index.html?q=info HTTP/1.1\r\n\r\n")]), P) == []
    assert tracker(evidence([("o", b"GET /announce HTTP/1.1\r\n\r\n")]), P) == []
    assert tracker(evidence([("o", b"GET /webseed?info_hash=%aa HTTP/1.1\r\n\r\n")]), P) == []


def test_info_hash_outside_the_request_line_does_not_count():
    req = b"GET /announce?x=1 HTTP/1.1\r\nReferer: /announce?info_hash=abc\r\n\r\n"
    assert tracker(evidence([("o", req)]), P) == []
