import dataclasses

import pytest
from detect_builders import RFC8448_CLIENT_HELLO, evidence, features, mse_packets, rand, reason

from msewatch.detect.mse import mse_handshake, step3_layout
from msewatch.detect.params import DetectParams
from msewatch.evidence import FAMILY_SHAPE, bursts_of

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
    o = only(mse_handshake(evidence(mse_packets(step3=300)[:4]), P))
    assert o.feature == "mse_partial" and o.value == P.mse_partial3_value
    assert reason(o, "step3") == "libtorrent_like" and reason(o, "bt_len") == "absent"


def test_a_step3_of_exactly_124_is_the_handshake_already_before_step4():
    # PadC = 0 and the 68-byte BT handshake as IA (Transmission, rTorrent): the length shows
    o = only(mse_handshake(evidence(mse_packets()[:4]), P))
    assert o.feature == "mse_handshake" and reason(o, "step3") == "transmission_like"


def test_a_connection_dropped_after_step3_shows_the_handshake_length_in_burst3():
    # real sizes (swarm.pcap, Transmission as B closing a duplicate peer): 182, -309, 485, 68
    pkts = [("o", rand(182, 1)), ("r", rand(309, 2)), ("o", rand(485, 3)), ("o", rand(68, 4))]
    o = only(mse_handshake(evidence(pkts, complete=True), P))
    assert o.feature == "mse_handshake" and reason(o, "bt_len") == "68@4"


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


def test_only_orig_packets_without_the_bt_length_are_a_one_sided_partial_match():
    ev = evidence([("o", rand(300)), ("o", rand(200, seed=5))], complete=True)
    assert len(ev.bursts) == 1 and ev.one_sided == "orig"
    o = only(mse_handshake(ev, P))
    assert o.feature == "mse_partial" and reason(o, "one_sided") == "1" and reason(o, "bt_len") == "absent"


def test_one_sided_step1_step3_and_a_68_byte_segment_are_the_handshake():
    # real sizes of the originator alone (swarm.pcap, libtorrent): 228, 312, 68, 303, ...
    pkts = [("o", rand(228, 1)), ("o", rand(312, 2)), ("o", rand(68, 3)), ("o", rand(303, 4))]
    o = only(mse_handshake(evidence(pkts, handshake=False), P))
    assert o.feature == "mse_handshake" and o.value == P.mse_one_sided_value
    assert reason(o, "one_sided") == "1" and reason(o, "bt_len") == "68@3"


def test_one_sided_step3_of_124_is_the_handshake():
    pkts = [("o", rand(309, 1)), ("o", rand(124, 2)), ("o", rand(1400, 3))]
    o = only(mse_handshake(evidence(pkts, handshake=False), P))
    assert o.feature == "mse_handshake" and reason(o, "step3") == "124"


def test_one_sided_text_or_a_short_first_payload_is_not_mse():
    text = b"GET / HTTP/1.1\r\nHost: example.org\r\nUser-Agent: curl\r\n\r\n" * 3
    assert mse_handshake(evidence([("o", text), ("o", rand(124)), ("o", rand(68, 2))]), P) == []
    assert mse_handshake(evidence([("o", rand(60)), ("o", rand(124)), ("o", rand(68, 2))]), P) == []


def test_one_sided_sizes_on_the_ssh_lattice_stay_partial():
    # every size a multiple of 4 besides the BT lengths: an SSH slice could look like this
    pkts = [("o", rand(100, 1)), ("o", rand(116, 2)), ("o", rand(68, 3)), ("o", rand(52, 4)), ("o", rand(36, 5))]
    o = only(mse_handshake(evidence(pkts, handshake=False), P))
    assert o.feature == "mse_partial" and reason(o, "ssh_lattice") == "1"


def test_responder_speaking_first_is_not_mse():
    pkts = [("r", rand(300, seed=2)), ("o", rand(300)), ("r", rand(124, seed=3))]
    assert mse_handshake(evidence(pkts), P) == []


def test_shadowsocks_like_server_burst_above_608_is_not_mse():
    # 32-byte salt + AEAD chunks from the client, a large server reply in segments
    client = rand(32, seed=11) + rand(268, seed=12)
    server = [("r", rand(1400, seed=13)), ("r", rand(1400, seed=14))]
    ev = evidence([("o", client), *server, ("o", rand(120, seed=15))])
    assert mse_handshake(ev, P) == []


def test_a_printable_prefix_on_a_random_key_does_not_block_mse():
    # swarm.pcap 10.77.0.14:44361: Yb starts ";.wirI", six printable bytes (0.26 % of keys);
    # the GFW's Ex2 exempts it, the shape detector holding the whole head does not
    pkts = mse_packets()
    pkts[2] = ("r", b";.wirI" + pkts[2][1][6:])
    o = only(mse_handshake(evidence(pkts), P))
    assert o.feature == "mse_handshake"


def test_text_on_either_side_blocks_mse():
    text = b"220 mail.example.org ESMTP Postfix (Debian/GNU) ready for you\r\n" * 4
    for i, d in ((0, "o"), (2, "r")):
        pkts = mse_packets()
        pkts[i] = (d, text[: len(pkts[i][1])])
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


def test_start_unseen_with_the_whole_exchange_from_the_first_packet_keeps_full_strength():
    ev = evidence(mse_packets(), handshake=False)
    assert ev.first_packet_payload
    o = only(mse_handshake(ev, P))
    assert o.value == 1.0 and reason(o, "start_seen") == "0" and reason(o, "first_packet_payload") == "1"


def test_start_unseen_after_a_packet_without_payload_halves_the_value_and_says_so():
    ev = dataclasses.replace(evidence(mse_packets(), handshake=False), times=tuple(t + 0.5 for t in evidence(mse_packets()).times))
    assert not ev.first_packet_payload
    o = only(mse_handshake(ev, P))
    assert o.value == 0.5 and reason(o, "start_seen") == "0" and reason(o, "first_packet_payload") is None


def test_start_unseen_partial_match_is_halved():
    o = only(mse_handshake(evidence(mse_packets(step3=300)[:4], handshake=False), P))
    assert o.feature == "mse_partial" and o.value == P.mse_partial3_value * P.midstream_factor


def test_a_retransmitted_step1_counts_once():
    # Ya retransmitted one RTO later, before a slow responder answered (retrans perturbation)
    ev = evidence(mse_packets(split_step1=False))
    sizes = (ev.sizes[0],) + ev.sizes
    times = (0.0, 0.25) + tuple(t + 0.3 for t in ev.times[1:])
    ev = dataclasses.replace(ev, sizes=sizes, times=times, bursts=bursts_of(sizes))
    o = only(mse_handshake(ev, P))
    assert o.feature == "mse_handshake" and reason(o, "retransmissions") == "1"


def test_segments_of_one_message_back_to_back_are_not_retransmissions():
    ev = evidence([("o", rand(300)), ("o", rand(300, 2))])
    assert ev.sizes_without_retransmissions() == (300, 300)


@pytest.mark.parametrize("lost", [0, 1, 2])
def test_one_lost_step_with_the_bt_length_still_shows_the_exchange(lost):
    # swarm.pcap sizes 552, -580, 143, -79, 68, -310 with one of the first three packets
    # missing from the capture (loss at the sensor), the TCP start seen
    pkts = [("o", rand(552, 1)), ("r", rand(580, 2)), ("o", rand(143, 3)), ("r", rand(79, 4)),
            ("o", rand(68, 5)), ("r", rand(310, 6))]
    del pkts[lost]
    o = only(mse_handshake(evidence(pkts), P))
    assert o.feature == "mse_handshake" and reason(o, "lost") == f"step{lost + 1}"


def test_a_lost_step_without_the_bt_length_is_not_the_handshake():
    pkts = [("o", rand(552, 1)), ("o", rand(143, 3)), ("r", rand(79, 4)), ("o", rand(70, 5)), ("r", rand(310, 6))]
    assert {o.feature for o in mse_handshake(evidence(pkts), P)} <= {"mse_partial"}


def test_a_head_cut_to_30_bytes_by_the_snaplen_still_shows_the_exchange():
    ev = evidence(mse_packets())
    ev = dataclasses.replace(ev, orig_heads=(ev.orig_heads[0][:30],), resp_heads=(ev.resp_heads[0][:30],))
    assert ev.head_captured() == (30, 30)
    o = only(mse_handshake(ev, P))
    assert o.feature == "mse_handshake" and reason(o, "head_captured") == "30"


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



def test_a_68_byte_tail_of_a_segmented_proxy_chunk_is_not_the_bt_handshake():
    # held-out corpus (seed 2), shadowsocks_aead_chacha.pcap at MSS 536: a 604-byte reply
    # chunk became 536 + 68 in the sixth run; it once made a false positive that then
    # spread to four more flows through the peer cache
    sizes = [188, -536, -63, 116, -439, 115, -536, -68, 116, -409]
    pkts = [("o" if s > 0 else "r", rand(abs(s), i)) for i, s in enumerate(sizes)]
    o = only(mse_handshake(evidence(pkts), P))
    assert o.feature == "mse_partial" and reason(o, "bt_len") == "absent"


def test_the_bt_handshake_segment_must_sit_in_the_exchange_and_not_after_full_segments():
    from msewatch.detect.mse import bt_segment

    assert bt_segment([300, -200, 109, 68, -52], P) == 3  # aria2: step 3, then the handshake
    assert bt_segment([300, -200, 300, -200, 300, -200, 68], P) is None  # seventh run: too late
    assert bt_segment([300, -536, -536, -68, 300], P) is None  # 536 repeated: the MSS, 68 its tail
    assert bt_segment([368, -373, 541, 68], P) == 3  # a 541-byte step 3 once is no MSS
