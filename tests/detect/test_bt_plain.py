import struct

from detect_builders import evidence, features, rand, reason

from msewatch.detect.bt_plain import bt_plain, walk_peerwire
from msewatch.detect.params import DetectParams
from msewatch.evidence import FAMILY_PLAINTEXT

P = DetectParams()
INFO_HASH = bytes.fromhex("d2474e86c95b19b8bcfdb92bc12c9d44667cfa36")


def handshake(peer_id: bytes, reserved: bytes = bytes([0, 0, 0, 0, 0, 0x10, 0, 0x05])) -> bytes:
    """BEP 3: pstrlen, pstr, reserved (here BEP 10 + DHT + fast bits), info_hash, peer_id."""
    assert len(peer_id) == 20
    return b"\x13BitTorrent protocol" + reserved + INFO_HASH + peer_id


def msg(mid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IB", 1 + len(payload), mid) + payload


EXT_HS = msg(20, b"\x00" + b"d1:md11:ut_metadatai2e6:ut_pexi1ee1:pi51413e1:v15:Transmission 3.0e")


def test_handshake_reports_bits_info_hash_and_client():
    ev = evidence([("o", handshake(b"-TR3000-" + b"a1b2c3d4e5f6")),
                   ("r", handshake(b"-lt0D80-" + b"x" * 12))])
    f = features(bt_plain(ev, P))
    o = f["bt_handshake"]
    assert o.family == FAMILY_PLAINTEXT and o.protocol == "bt_plain" and o.value == 1.0
    assert reason(o, "dir") == "both"
    assert reason(o, "ext_bep10") == "1" and reason(o, "dht") == "1" and reason(o, "fast") == "1"
    assert reason(o, "info_hash") == INFO_HASH.hex()
    assert reason(o, "client") == "-TR3000-"
    assert reason(o, "resp_client") == "-lt0D80-"
    assert reason(o, "info_hash_match") == "1"
    assert all("\\x" not in r for r in o.reasons)  # no raw bytes, only hex


def test_reserved_bits_clear_are_reported_as_zero():
    ev = evidence([("o", handshake(b"M7-4-0--" + b"z" * 12, reserved=bytes(8)))])
    o = features(bt_plain(ev, P))["bt_handshake"]
    assert reason(o, "ext_bep10") == "0" and reason(o, "dht") == "0"
    assert reason(o, "client") == "M7-4-0--"


def test_unreadable_peer_id_prefix_is_reported_as_hex():
    ev = evidence([("o", handshake(b"\x00\x01\x02\x03\x04\x05\x06\x07" + b"z" * 12))])
    o = features(bt_plain(ev, P))["bt_handshake"]
    assert reason(o, "peer_id_prefix") == "0001020304050607"


def test_info_hash_can_be_kept_out_of_reasons():
    ev = evidence([("o", handshake(b"-TR3000-" + b"1" * 12))])
    p = DetectParams(report_info_hash=False)
    o = features(bt_plain(ev, p))["bt_handshake"]
    assert reason(o, "info_hash") is None


def test_extension_handshake_in_the_same_packet_is_bt_peerwire():
    ev = evidence([("o", handshake(b"-TR3000-" + b"1" * 12) + EXT_HS + msg(14))])
    f = features(bt_plain(ev, P))
    assert set(f) == {"bt_handshake", "bt_peerwire"}
    assert reason(f["bt_peerwire"], "orig_msgs") == "ext_handshake+have_all"
    assert f["bt_peerwire"].value == 1.0


def test_libtorrent_style_extension_dict_with_sorted_keys_is_accepted():
    body = b"\x00d12:complete_agoi-1e1:md11:ut_metadatai2eee"
    names, ok = walk_peerwire(msg(20, body), 0, P)
    assert ok and names == ["ext_handshake"]


def test_midstream_peerwire_messages_are_recognised_when_start_was_missed():
    data = msg(4, struct.pack(">I", 17)) + msg(4, struct.pack(">I", 18)) + msg(1)
    ev = evidence([("o", data)], handshake=False)
    (o,) = bt_plain(ev, P)
    assert o.feature == "bt_peerwire" and o.value == P.peerwire_alone_value
    assert reason(o, "orig_msgs") == "have+have+unchoke"
    assert reason(o, "start_seen") == "0"


def test_peerwire_framing_at_an_observed_stream_start_is_not_bittorrent():
    # BitTorrent must open with the handshake (or MSE); framed bytes first mean something else
    data = msg(4, struct.pack(">I", 17)) + msg(4, struct.pack(">I", 18))
    assert bt_plain(evidence([("o", data)], handshake=True), P) == []


def test_single_midstream_message_is_not_enough():
    ev = evidence([("o", msg(2))], handshake=False)
    assert bt_plain(ev, P) == []


def test_wrong_fixed_length_breaks_the_walk():
    bad = struct.pack(">IB", 7, 4) + b"\x00" * 6  # 'have' must be 5 long
    names, ok = walk_peerwire(bad, 0, P)
    assert not ok and names == []


def test_random_midstream_bytes_are_not_peerwire():
    for seed in range(20):
        assert bt_plain(evidence([("o", rand(300, seed=seed))], handshake=False), P) == []


def test_handshake_string_not_at_offset_zero_is_ignored():
    ev = evidence([("o", b"GET " + handshake(b"-TR3000-" + b"1" * 12))])
    assert bt_plain(ev, P) == []


def test_udp_is_not_checked_for_tcp_handshakes():
    ev = evidence([("o", handshake(b"-TR3000-" + b"1" * 12))], proto="udp")
    assert bt_plain(ev, P) == []
