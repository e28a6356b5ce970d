from detect_builders import RFC8448_CLIENT_HELLO, evidence, features, mse_packets, rand, reason

from msewatch.detect.mse import mse_handshake, step3_layout
from msewatch.detect.params import DetectParams
from msewatch.evidence import FAMILY_SHAPE

P = DetectParams()


def only(obs):
    assert len(obs) == 1, obs
    return obs[0]


def test_transmission_style_four_step_handshake_is_mse_handshake_with_fingerprint():
    o = only(mse_handshake(evidence(mse_packets()), P))
    assert o.feature == "mse_handshake" and o.family == FAMILY_SHAPE and o.protocol == "bt_mse"
    assert o.value == 1.0
    assert reason(o, "burst1") == "296"  # 150 + 146 bytes: two TCP segments, one burst
    assert reason(o, "burst2") == "246"
    assert reason(o, "burst3") == "124"
    assert reason(o, "step3") == "transmission_like"
    assert reason(o, "burst4") == "82"
    assert 3.4 < float(reason(o, "popcount_orig")) < 4.6
    assert 3.4 < float(reason(o, "popcount_resp")) < 4.6


def test_libtorrent_style_step3_with_random_padc_and_ia_is_libtorrent_like():
    # 56 + PadC 100 + IA 68 = 224
    o = only(mse_handshake(evidence(mse_packets(pad_a=0, pad_b=512, step3=224)), P))
    assert o.feature == "mse_handshake" and reason(o, "step3") == "libtorrent_like"
    assert reason(o, "burst1") == "96" and reason(o, "burst2") == "608"


def test_aria2_style_step3_without_ia_is_full_match_at_lower_value():
    # IA = 0: 56 + PadC 30 = 86
    o = only(mse_handshake(evidence(mse_packets(step3=86)), P))
    assert o.feature == "mse_handshake" and reason(o, "step3") == "no_ia_like"
    assert o.value == P.mse_full_value < P.mse_full_fingerprint_value


def test_step4_coalesced_with_payload_has_no_upper_bound():
    o = only(mse_handshake(evidence(mse_packets(step4=14 + 68 + 2000)), P))
    assert o.feature == "mse_handshake" and reason(o, "burst4") == "2082"


def test_first_two_bursts_alone_are_a_weaker_partial_match():
    ev = evidence(mse_packets()[:3])
    o = only(mse_handshake(ev, P))
    assert o.feature == "mse_partial" and o.value == P.mse_partial_value
    assert reason(o, "burst3") is None


def test_three_bursts_with_a_valid_step3_raise_the_partial_value():
    o = only(mse_handshake(evidence(mse_packets()[:4]), P))
    assert o.feature == "mse_partial" and o.value == P.mse_partial3_value
    assert reason(o, "step3") == "transmission_like"


def test_short_open_burst3_may_still_grow_so_it_stays_partial():
    pkts = mse_packets()[:3] + [("o", rand(30, seed=9))]
    o = only(mse_handshake(evidence(pkts), P))
    assert o.feature == "mse_partial" and reason(o, "burst3_open") == "30"


def test_step3_shorter_than_56_bytes_rules_mse_out_once_final():
    pkts = mse_packets(step3=40)
    assert mse_handshake(evidence(pkts), P) == []
    assert mse_handshake(evidence(pkts[:4], complete=True), P) == []


def test_step4_shorter_than_14_bytes_rules_mse_out_once_final():
    assert mse_handshake(evidence(mse_packets(step4=10), complete=True), P) == []


def test_large_first_burst_is_not_mse():
    pkts = [("o", rand(1400)), ("r", rand(200, seed=2)), ("o", rand(124, seed=3)), ("r", rand(82, seed=4))]
    assert mse_handshake(evidence(pkts), P) == []


def test_first_burst_below_96_bytes_is_not_mse():
    pkts = [("o", rand(80)), ("r", rand(200, seed=2)), ("o", rand(124, seed=3))]
    assert mse_handshake(evidence(pkts), P) == []


def test_only_orig_bursts_never_match():
    ev = evidence([("o", rand(300)), ("o", rand(200, seed=5))], complete=True)
    assert len(ev.bursts) == 1
    assert mse_handshake(ev, P) == []


def test_responder_speaking_first_is_not_mse():
    pkts = [("r", rand(300, seed=2)), ("o", rand(300)), ("r", rand(124, seed=3))]
    assert mse_handshake(evidence(pkts), P) == []


def test_shadowsocks_like_server_burst_above_608_is_not_mse():
    # 32-byte salt + AEAD chunks from the client, a large server reply in segments
    client = rand(32, seed=11) + rand(268, seed=12)
    server = [("r", rand(1400, seed=13)), ("r", rand(1400, seed=14))]
    ev = evidence([("o", client), *server, ("o", rand(120, seed=15))])
    assert mse_handshake(ev, P) == []


def test_printable_prefix_on_orig_head_blocks_mse():
    pkts = mse_packets()
    pkts[0] = ("o", b"Hello!" + pkts[0][1][6:])
    assert mse_handshake(evidence(pkts), P) == []


def test_printable_prefix_on_resp_head_blocks_mse():
    pkts = mse_packets()
    pkts[2] = ("r", b"220 ok" + pkts[2][1][6:])
    assert mse_handshake(evidence(pkts), P) == []


def test_plain_bt_handshake_start_is_not_mse():
    hs = b"\x13BitTorrent protocol" + bytes(8) + rand(40, seed=7)
    pkts = mse_packets()
    pkts[0] = ("o", hs + rand(82))
    assert mse_handshake(evidence(pkts), P) == []


def test_dh_value_starting_with_eight_ff_bytes_cannot_be_ya():
    pkts = mse_packets(split_step1=False)
    pkts[0] = ("o", b"\xff" * 8 + pkts[0][1][8:])
    assert mse_handshake(evidence(pkts), P) == []


def test_tls_exchange_with_mse_like_sizes_is_rejected():
    pkts = [
        ("o", RFC8448_CLIENT_HELLO),  # 201 bytes, in range
        ("r", b"\x16\x03\x03\x00\x5a" + rand(150, seed=2)),
        ("o", b"\x14\x03\x03\x00\x01\x01" + rand(100, seed=3)),
        ("r", b"\x17\x03\x03" + rand(100, seed=4)),
    ]
    assert mse_handshake(evidence(pkts), P) == []


def test_midstream_flow_halves_the_value_and_says_so():
    o = only(mse_handshake(evidence(mse_packets(), handshake=False), P))
    assert o.value == 0.5 and reason(o, "start_seen") == "0"


def test_udp_flows_are_not_judged_by_the_tcp_shape():
    assert mse_handshake(evidence(mse_packets(), proto="udp"), P) == []


def test_step3_layout_names():
    assert step3_layout(124, P) == "transmission_like"
    assert step3_layout(636, P) == "libtorrent_like"
    assert step3_layout(56, P) == "no_ia_like"
    assert step3_layout(900, P) == "coalesced"


def test_every_prefix_of_a_handshake_upgrades_monotonically():
    ev = evidence(mse_packets())
    seen = [features(mse_handshake(ev.prefix(n), P)) for n in range(1, len(ev.sizes) + 1)]
    assert seen[0] == {}  # step 1 segment only
    assert "mse_partial" in seen[2]
    assert "mse_handshake" in seen[-1]


def test_full_shape_without_the_bt_handshake_length_is_only_a_partial_match():
    # A shadowsocks keep-alive session of small requests (real bursts from the corpus:
    # 189, -517, 115, -436): the four-step shape holds, but no 68-byte BT handshake shows
    # through, so it must not count as a full MSE handshake.
    pkts = [("o", rand(189, 1)), ("r", rand(517, 2)), ("o", rand(115, 3)), ("r", rand(436, 4))]
    o = only(mse_handshake(evidence(pkts), P))
    assert o.feature == "mse_partial" and o.value == P.mse_partial3_value
    assert reason(o, "bt_len") == "absent"


def test_a_68_byte_segment_after_steps_1_2_is_the_encrypted_bt_handshake():
    # aria2 as initiator (real sizes from the corpus): 373, -189, 109, 68, -52: IA = 0, the
    # handshake follows step 3 as its own 68-byte segment (RC4 keeps its length)
    pkts = [("o", rand(373, 1)), ("r", rand(189, 2)), ("o", rand(109, 3)), ("o", rand(68, 5)), ("r", rand(52, 4))]
    o = only(mse_handshake(evidence(pkts), P))
    assert o.feature == "mse_handshake" and reason(o, "bt_len") == "68@4"


def test_step4_of_exactly_82_is_padd_zero_plus_the_handshake():
    o = only(mse_handshake(evidence(mse_packets(step3=300, step4=82)), P))
    assert o.feature == "mse_handshake" and reason(o, "step4") == "82"

