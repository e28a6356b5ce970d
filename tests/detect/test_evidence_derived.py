"""What the evidence says about the capture (evidence.py, docs/evidence.md "Derived facts"),
and the detector rules that use it for truncated, one-sided and retransmitting captures."""

import dataclasses
import struct

from detect_builders import evidence, features, mse_packets, rand, reason, udp

from msewatch.detect.lsd import lsd
from msewatch.detect.params import DetectParams
from msewatch.detect.randomness import fully_encrypted_first_packet, popcount_band, printable_limit, random_verdict
from msewatch.detect.tracker import tracker, tracker_answer
from msewatch.detect.utp import utp
from msewatch.evidence import FlowEvidence, FlowKey, truncate_to_budget

P = DetectParams()


def test_start_seen_is_the_tcp_handshake_and_always_true_for_udp():
    assert evidence(mse_packets()).start_seen
    assert not evidence(mse_packets(), handshake=False).start_seen
    assert udp([("o", b"x" * 20)]).start_seen


def test_one_sided_names_the_only_side_seen():
    assert evidence(mse_packets()).one_sided is None
    assert evidence([("o", rand(300)), ("o", rand(124))]).one_sided == "orig"
    assert evidence([("r", rand(300))]).one_sided == "resp"
    # pure ACKs count: a responder that sent only ACKs was seen
    assert dataclasses.replace(evidence([("o", rand(300))]), resp_pkts=3).one_sided is None


def test_a_prefix_keeps_the_sides_the_whole_flow_showed():
    ev = evidence(mse_packets())
    assert ev.prefix(1).one_sided is None  # the responder exists, it just has not spoken yet
    one = evidence([("o", rand(300)), ("o", rand(124)), ("o", rand(68))])
    assert one.prefix(2).one_sided == "orig"


def test_first_packet_payload_is_times_zero():
    ev = evidence(mse_packets(), handshake=False)
    assert ev.first_packet_payload
    assert not dataclasses.replace(ev, times=tuple(t + 0.1 for t in ev.times)).first_packet_payload


def test_head_captured_tells_a_snaplen_cut_from_the_budget():
    ev = evidence([("o", rand(300)), ("r", rand(200, 2))])  # heads cut to 256 by the budget
    assert ev.head_captured(256) == (None, None)
    snap = dataclasses.replace(ev, orig_heads=(ev.orig_heads[0][:30],), resp_heads=(ev.resp_heads[0][:30],))
    assert snap.head_captured(256) == (30, 30)
    small = evidence([("o", rand(20))])
    assert small.head_captured(256) == (None, None)  # a 20-byte packet is whole at 20 bytes
    u = udp([("o", rand(100)), ("o", rand(80, 2))])
    cut = dataclasses.replace(u, orig_heads=(u.orig_heads[0], u.orig_heads[1][:54]))
    assert cut.head_captured(256) == (54, None)


def test_evidence_within_the_budget_is_not_truncated():
    assert truncate_to_budget(evidence(mse_packets()), 32, 8, 256, 4) is None


def test_truncation_cuts_packets_runs_and_heads():
    sizes = tuple(100 if i % 2 == 0 else -100 for i in range(1000))
    ev = FlowEvidence(
        key=FlowKey("tcp", "10.0.0.1", 1, "10.0.0.2", 2), uid="C", community_id="1:x", ts=0.0, sizes=sizes,
        times=tuple(float(i) for i in range(1000)), bursts=sizes, orig_heads=(b"a" * 999, b"b"), resp_heads=(b"c",),
        orig_pkts=500, resp_pkts=500, handshake=True, complete=True,
    )
    cut = truncate_to_budget(ev, 32, 8, 256, 4)
    assert cut is not None
    assert cut.sizes == sizes[:8] and cut.times == ev.times[:8] and cut.bursts == sizes[:8]
    assert cut.orig_heads == (b"a" * 256,)  # TCP keeps one head per direction
    assert (cut.orig_pkts, cut.resp_pkts, cut.complete) == (500, 500, True)  # counters stay
    same_dir = dataclasses.replace(ev, sizes=(100,) * 1000, bursts=(100_000,))
    assert truncate_to_budget(same_dir, 32, 8, 256, 4).sizes == (100,) * 32


def test_retransmissions_are_same_size_same_direction_one_rto_later():
    ev = evidence([("o", rand(300)), ("o", rand(300, 2)), ("r", rand(200, 3))])
    ev = dataclasses.replace(ev, times=(0.0, 0.3, 0.31))
    assert ev.sizes_without_retransmissions() == (300, -200)
    assert dataclasses.replace(ev, times=(0.0, 0.0001, 0.31)).sizes_without_retransmissions() == (300, 300, -200)


def test_truncated_heads_are_judged_with_length_aware_limits():
    lo, hi = popcount_band(P, 30, truncated=True)
    assert lo < P.popcount_low and hi > P.popcount_high
    lo96, hi96 = popcount_band(P, 96, truncated=True)  # the fixed band is +-4.16 sigma at 96 bytes
    assert abs(lo96 - P.popcount_low) < 0.01 and abs(hi96 - P.popcount_high) < 0.01
    assert popcount_band(P, 30, truncated=False) == (P.popcount_low, P.popcount_high)
    assert printable_limit(P, 30, True) > printable_limit(P, 30, False)
    # uniform 30-byte heads: the whole-packet limits reject several percent, these almost none
    heads = [rand(30, s) for s in range(3000)]
    assert sum(not random_verdict(h, P, truncated=True, prefix_exempt=False).random for h in heads) < 15
    assert sum(not random_verdict(h, P, prefix_exempt=False).random for h in heads) > 100
    # text stays text at any length
    assert not random_verdict(b"GET /index.html HTTP/1.1\r\nHost", P, truncated=True).random


def test_fully_encrypted_says_what_the_capture_held():
    ev = evidence(mse_packets())
    snap = dataclasses.replace(ev, orig_heads=(ev.orig_heads[0][:30],))
    o = fully_encrypted_first_packet(snap, P)[0]
    assert reason(o, "head_captured") == "30" and o.value == 0.5
    one = evidence([("o", rand(300)), ("o", rand(124))], handshake=False)
    assert reason(fully_encrypted_first_packet(one, P)[0], "one_sided") == "1"


def test_lsd_request_line_to_the_group_is_enough_when_the_capture_cut_the_headers():
    full = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: " + b"a" * 40 + b"\r\n\r\n\r\n"
    ev = udp([("o", full)], resp=("239.192.152.143", 6771))
    cut = dataclasses.replace(ev, orig_heads=(full[:54],))
    o = lsd(cut, P)[0]
    assert o.feature == "lsd" and reason(o, "head_captured") == "54"
    elsewhere = dataclasses.replace(cut, key=dataclasses.replace(cut.key, resp_h="10.0.0.9"))
    assert lsd(elsewhere, P) == []


def _utp(typ: int, cid: int, seq: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BBHIIIHH", typ << 4 | 1, 0, cid, 123456, 0 if typ == 4 else 1000, 65536, seq, 0) + payload


def test_utp_initiator_alone_is_coherent_when_ids_and_sequence_numbers_follow_the_syn():
    pkts = [("o", _utp(4, 100, 7)), ("o", _utp(0, 101, 8, rand(60))), ("o", _utp(2, 101, 9)), ("o", _utp(0, 101, 9, rand(50, 2)))]
    ev = udp(pkts, orig=("10.0.0.1", 6881), resp=("10.0.0.2", 6881))
    assert ev.one_sided == "orig"
    f = features(utp(ev, P))
    assert f["utp_coherent"].value == P.utp_one_way_value and reason(f["utp_coherent"], "one_sided") == "1"
    wrong_id = [pkts[0], ("o", _utp(0, 555, 8, rand(60)))]
    assert "utp_coherent" not in features(utp(udp(wrong_id, orig=("10.0.0.1", 6881), resp=("10.0.0.2", 6881)), P))


def test_a_tracker_answer_alone_is_the_tracker():
    answer = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nd8:completei5e10:incompletei2e8:intervali1800e5:peers0:e"
    assert tracker_answer(answer)
    assert not tracker_answer(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>")
    ev = evidence([("r", answer)], resp=("10.0.0.250", 6969))
    assert features(tracker(ev, P))["http_tracker"].protocol == "tracker"
