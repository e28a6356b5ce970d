from detect_builders import evidence, rand, reason, udp

from msewatch.detect.dht import dht_krpc, krpc_kind
from msewatch.detect.params import DetectParams
from msewatch.evidence import FAMILY_PLAINTEXT

P = DetectParams()

# BEP 5 examples, verbatim
PING_Q = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
PING_R = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
FIND_NODE_Q = b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe"
GET_PEERS_Q = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe"
ANNOUNCE_Q = (b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz123456"
              b"4:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe")
ERROR = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee"


def test_ping_query_and_response_both_ways_is_strong_dht():
    (o,) = dht_krpc(udp([("o", PING_Q), ("r", PING_R)]), P)
    assert o.feature == "dht_krpc" and o.family == FAMILY_PLAINTEXT and o.protocol == "dht"
    assert o.value == P.dht_both_ways_value == 1.0
    assert reason(o, "dir") == "both" and reason(o, "y") == "q+r" and reason(o, "q") == "ping"


def test_unanswered_query_is_one_way_and_weaker():
    (o,) = dht_krpc(udp([("o", GET_PEERS_Q)]), P)
    assert o.value == P.dht_one_way_value < 1.0
    assert reason(o, "dir") == "orig" and reason(o, "q") == "get_peers"


def test_every_bep5_query_method_is_named():
    for q, name in ((FIND_NODE_Q, "find_node"), (ANNOUNCE_Q, "announce_peer"), (PING_Q, "ping")):
        (o,) = dht_krpc(udp([("o", q)]), P)
        assert reason(o, "q") == name


def test_error_message_is_krpc():
    assert krpc_kind(ERROR) == "e"
    (o,) = dht_krpc(udp([("o", PING_Q), ("r", ERROR)]), P)
    assert reason(o, "y") == "e+q"


def test_bep42_response_with_ip_first_is_krpc():
    resp = b"d2:ip6:\xc0\x00\x02\x07\x1a\xe1" + b"1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
    (o,) = dht_krpc(udp([("o", PING_Q), ("r", resp)]), P)
    assert reason(o, "bep42_ip") == "1" and reason(o, "dir") == "both"


def test_response_whose_y_key_is_past_the_head_limit_is_still_a_response():
    nodes = rand(416)
    resp = b"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes416:" + nodes + b"e1:t2:aa1:y1:re"
    assert krpc_kind(resp[:256]) == "r"


def test_unsorted_client_starting_with_t_needs_a_marker():
    assert krpc_kind(b"d1:t2:aa1:y1:q1:q4:ping1:ad2:id20:abcdefghij0123456789ee") == "q"
    assert krpc_kind(b"d1:t2:aa4:name5:helloe") is None


def test_other_bencoded_payloads_are_not_dht():
    assert dht_krpc(udp([("o", b"d8:announce35:udp://tracker.example:1337/announce4:infod")]), P) == []
    assert dht_krpc(udp([("o", b"d1:xi1ee")]), P) == []


def test_dns_query_is_not_dht():
    dns = bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")
    assert dht_krpc(udp([("o", dns)], resp=("192.0.2.53", 53)), P) == []


def test_krpc_bytes_over_tcp_are_ignored():
    assert dht_krpc(evidence([("o", PING_Q)]), P) == []
