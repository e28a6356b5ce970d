"""Engine behaviour: budgets, cached labels, hysteresis, flow-table bounds, both ways in.

Packets here are hand-made (allowed for unit tests of one mechanism); the real-traffic
checks are in tests/engine/test_analyze_real.py.
"""

import dataclasses
import random
import socket

import pytest

from msewatch.config import Config, parse_config
from msewatch.engine import Engine
from msewatch.score.flow import decide, label_for, score_observations
from msewatch.evidence import FAMILY_RANDOM, FAMILY_SHAPE, FlowEvidence, FlowKey, Observation
from msewatch.verdict import NORMAL, P2P, UNKNOWN, FlowVerdict

A = socket.inet_aton("10.0.0.1")
B = socket.inet_aton("10.0.0.2")
SYN, ACK, FIN, PSH = 0x02, 0x10, 0x01, 0x08


def rnd(n, seed):
    return random.Random(seed).randbytes(n)


def tcp_open(eng, t, sport=40000, dport=51413):
    eng.process_packet(t, 6, A, sport, B, dport, SYN, b"")
    eng.process_packet(t + 0.001, 6, B, dport, A, sport, SYN | ACK, b"")
    eng.process_packet(t + 0.002, 6, A, sport, B, dport, ACK, b"")


def mse_exchange(eng, t, sport=40000, dport=51413, extra=0):
    """Sizes of a Transmission-style MSE handshake: Ya+PadA, Yb+PadB, 124, 82, then data."""
    tcp_open(eng, t, sport, dport)
    steps = [(A, 96 + 200), (B, 96 + 117), (A, 124), (B, 82)] + [(A, 68), (B, 1400)] * extra
    for i, (src, n) in enumerate(steps):
        if src == A:
            eng.process_packet(t + 0.01 * (i + 1), 6, A, sport, B, dport, ACK | PSH, rnd(n, i + sport))
        else:
            eng.process_packet(t + 0.01 * (i + 1), 6, B, dport, A, sport, ACK | PSH, rnd(n, i + sport))


def flows(out):
    return [v for v in out if isinstance(v, FlowVerdict)]


def test_mse_shaped_random_flow_is_labelled_p2p_at_the_handshake_not_before():
    eng = Engine()
    mse_exchange(eng, 1.0, extra=20)
    out = flows(eng.flush())
    assert len(out) == 1
    v = out[0]
    assert v.label == P2P and v.protocol == "bt_mse"
    assert v.decided_at_packet >= 3  # never from one packet
    assert any(r.startswith("burst1=296") for r in v.reasons)
    assert {FAMILY_SHAPE, FAMILY_RANDOM} <= set(v.families)


def test_tls_start_is_labelled_normal():
    eng = Engine()
    tcp_open(eng, 1.0, dport=443)
    hello = bytes.fromhex("160301") + (512).to_bytes(2, "big") + rnd(512, 1)
    eng.process_packet(1.01, 6, A, 40000, B, 443, ACK | PSH, hello)
    for i in range(6):
        eng.process_packet(1.02 + i / 100, 6, B, 443, A, 40000, ACK, bytes.fromhex("170303") + rnd(1400, i))
    out = flows(eng.flush())
    assert out[0].label == NORMAL
    assert any(r.startswith("tls_like") for r in out[0].reasons)


def test_budget_stops_recording_and_detectors_after_max_packets():
    cfg = parse_config({"budget": {"max_packets": 8}})
    eng = Engine(cfg)
    tcp_open(eng, 1.0)
    for i in range(500):
        src, dst, sp, dp = (A, B, 40000, 51413) if i % 2 == 0 else (B, A, 51413, 40000)
        eng.process_packet(1.01 + i / 1000, 6, src, sp, dst, dp, ACK, rnd(300, i))
    # emitted as soon as the 8th payload packet was recorded
    assert eng.stats.evidence_emitted == 1
    runs_after_budget = eng.stats.detector_runs
    assert runs_after_budget <= 8 + 1  # at most one scoring per burst boundary
    out = eng.flush()
    assert eng.stats.detector_runs == runs_after_budget  # nothing re-ran on later packets
    assert len(flows(out)) == 1  # one verdict, decided when the budget was spent


def test_counters_move_after_budget_but_evidence_is_frozen():
    seen = []

    class Rec(Engine):
        def on_evidence(self, ev):
            seen.append(ev)

    eng = Rec(parse_config({"budget": {"max_packets": 4}}))
    tcp_open(eng, 1.0)
    for i in range(10):
        eng.process_packet(1.1 + i / 100, 6, A, 40000, B, 51413, ACK, rnd(100, i))
    assert len(seen) == 1 and len(seen[0].sizes) == 4
    f = next(iter(eng.flows.values()))
    assert f.opkts == 12 and f.obytes == 1000  # SYN, ACK of the open + 10 data packets
    assert f.sizes == ()  # evidence buffers released after emission


def test_final_label_is_cached_and_not_reclassified():
    eng = Engine(parse_config({"budget": {"max_packets": 6}}))
    mse_exchange(eng, 1.0, extra=5)
    first = flows(eng.drain())
    assert first and first[0].label == P2P
    # a TLS-looking packet later in the same flow changes nothing
    eng.process_packet(2.0, 6, A, 40000, B, 51413, ACK, bytes.fromhex("16030100ff") + rnd(300, 9))
    assert flows(eng.flush()) == []


def test_flow_table_is_bounded_by_lru_eviction():
    eng = Engine(parse_config({"flow_table": {"max_flows": 100}}))
    for i in range(1000):
        eng.process_packet(1.0 + i / 1000, 17, A, 10000 + i, B, 53, 0, b"\x12\x34" + rnd(30, i))
        assert len(eng.flows) <= 100
    assert eng.stats.flows_evicted == 900
    out = flows(eng.flush())
    assert len(out) == 1000  # evicted flows were decided, not lost


def test_idle_flows_expire_on_capture_time():
    eng = Engine(parse_config({"flow_table": {"udp_idle_timeout": 30, "sweep_interval": 1}}))
    eng.process_packet(1.0, 17, A, 5000, B, 53, 0, rnd(40, 1))
    eng.process_packet(100.0, 17, A, 5001, B, 53, 0, rnd(40, 2))
    assert eng.stats.flows_expired == 1
    assert len(eng.flows) == 1


def test_packet_path_and_evidence_path_decide_alike():
    seen = []

    class Rec(Engine):
        def on_evidence(self, ev):
            seen.append(ev)

    a = Rec()
    mse_exchange(a, 1.0, extra=3)
    va = flows(a.flush())[0]
    b = Engine()
    vb = flows(b.process_evidence(seen[0]))[0]
    assert (va.label, va.protocol, va.decided_at_packet, va.reasons) == (
        vb.label,
        vb.protocol,
        vb.decided_at_packet,
        vb.reasons,
    )


def test_orig_is_the_syn_sender_even_if_synack_is_seen_first():
    seen = []

    class Rec(Engine):
        def on_evidence(self, ev):
            seen.append(ev)

    eng = Rec()
    eng.process_packet(1.0, 6, B, 51413, A, 40000, SYN | ACK, b"")
    eng.process_packet(1.1, 6, A, 40000, B, 51413, ACK, b"x" * 10)
    eng.flush()
    assert seen[0].key == FlowKey("tcp", "10.0.0.1", 40000, "10.0.0.2", 51413)
    assert seen[0].sizes == (10,)


def _ev(sizes, heads=(b"",), complete=True):
    times = tuple(i / 100 for i in range(len(sizes)))
    return FlowEvidence(
        key=FlowKey("tcp", "10.0.0.1", 1, "10.0.0.2", 2),
        uid="C1",
        community_id="1:x",
        ts=0.0,
        sizes=tuple(sizes),
        times=times,
        bursts=(),
        orig_heads=heads,
        resp_heads=(),
        complete=complete,
        handshake=True,
    )


def test_hysteresis_first_conclusive_prefix_wins():
    """A label reached at a burst boundary stays, even if later evidence would score lower."""
    sc = Config().scoring
    strong = [Observation("mse_handshake", FAMILY_SHAPE, 1.0, "bt_mse"), Observation("fully_encrypted", FAMILY_RANDOM, 1.0, None)]
    ev = _ev([300, -200, 124, -82, 1000, 1000])

    def observe(pre):
        return strong if len(pre.sizes) == 4 else [Observation("tls_like", "negative", 1.0, None)]

    d = decide(ev, observe, -3.0, False, sc)
    assert d.label == P2P and d.packet == 4


def test_one_family_is_not_enough_for_an_encrypted_flow():
    sc = parse_config({"scoring": {"weights": {"fully_encrypted": 30.0}}}).scoring
    fs = score_observations([Observation("fully_encrypted", FAMILY_RANDOM, 1.0, "bt_mse")], sc)
    label, s, p = label_for(fs, 0.0, False, 5, True, sc)
    assert p > sc.t_high and label == UNKNOWN


def test_plaintext_signature_alone_suffices():
    sc = Config().scoring
    fs = score_observations([Observation("bt_handshake", "plaintext_signature", 1.0, "bt_plain")], sc)
    assert label_for(fs, -3.0, False, 1, False, sc)[0] == P2P


def test_unknown_until_old_enough():
    sc = Config().scoring
    fs = score_observations([], sc)
    assert label_for(fs, -3.0, False, 2, False, sc)[0] == UNKNOWN
    assert label_for(fs, -3.0, False, 4, True, sc)[0] == NORMAL


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"budget": {"max_packets": "many"}}, "budget.max_packets"),
        ({"budgett": {}}, "budgett"),
        ({"scoring": {"weights": {"nonsense": 1.0}}}, "scoring.weights"),
        ({"scoring": {"t_low": 0.95}}, "scoring"),
        ({"detect": {"popcount_low": "x"}}, "detect"),
        ({"detect": {"no_such_param": 1}}, "detect"),
    ],
)
def test_config_errors_name_the_key(bad, key):
    from msewatch.config import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_config(bad, "my.yaml")
    assert f"my.yaml: {key}" in str(e.value)


def test_bundled_default_config_equals_builtin_defaults():
    from importlib import resources

    import yaml

    text = resources.files("msewatch").joinpath("data/default.yaml").read_text()
    assert parse_config(yaml.safe_load(text)) == Config()
    # every key is documented on its line
    for line in text.splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"undocumented config line: {line!r}"


def _tcp_ev(orig_p, resp_p, sizes, ts, seed):
    heads_o = (rnd(abs(next(s for s in sizes if s > 0)), seed)[:256],)
    heads_r = (rnd(abs(next(s for s in sizes if s < 0)), seed + 1)[:256],)
    return FlowEvidence(
        key=FlowKey("tcp", "10.0.0.1", orig_p, "10.0.0.2", resp_p),
        uid=f"C{seed}", community_id="1:x", ts=ts, sizes=tuple(sizes),
        times=tuple(i / 100 for i in range(len(sizes))), bursts=tuple(sizes),
        orig_heads=heads_o, resp_heads=heads_r, handshake=True, complete=True,
    )


def _dht(eng, ts=0.0, host="10.0.0.1"):
    krpc = b"d1:ad2:id20:" + b"A" * 20 + b"6:target20:" + b"B" * 20 + b"e1:q9:find_node1:t2:aa1:y1:qe"
    dht = FlowEvidence(
        key=FlowKey("udp", host, 6881, "10.0.0.9", 6881), uid="Cd", community_id="1:d", ts=ts,
        sizes=(len(krpc),), times=(0.0,), bursts=(len(krpc),), orig_heads=(krpc,), resp_heads=(), complete=True,
        orig_pkts=1,
    )
    assert flows(eng.process_evidence(dht))[0].label == P2P  # discovery on the host


def test_host_context_never_labels_an_encrypted_flow_without_an_anchor_of_its_own():
    """Context lifts, it never creates: right after discovery, an opening shaped like MSE
    but without the BT handshake length (what a shadowsocks or obfs4 flow of a P2P host
    looks like) stays unknown, seeds no peer, and counts for the host as unproven."""
    eng = Engine()
    _dht(eng)
    v = flows(eng.process_evidence(_tcp_ev(40000, 8388, [300, -200, 300, -200, 300, -200], 1.0, 7)))[0]
    assert v.label == UNKNOWN and "host_p2p_near=discovery" in v.reasons
    assert set(v.families_own) == {"handshake_shape", "randomness"} and "host_context" in v.families_context
    assert ("10.0.0.2", 8388) not in eng._peer_cache
    assert eng.hosts.hosts["10.0.0.1"].p2p_flows.value == 0.0  # counted as unproven, not as P2P


def test_a_full_exchange_is_decided_at_its_anchor_and_seeds_the_peer_endpoint():
    eng = Engine()
    _dht(eng)
    # a full MSE exchange with the BT handshake length (step 3 = 124, step 4 = 82)
    v = flows(eng.process_evidence(_tcp_ev(40000, 51413, [300, -200, 124, -82, 68, -1400], 1.0, 5)))[0]
    assert v.label == P2P and v.protocol == "bt_mse" and v.decided_at_packet == 3  # step 3 = 124
    assert ("10.0.0.2", 51413) in eng._peer_cache  # the endpoint, never the address pair
    assert all(isinstance(port, int) for _, port in eng._peer_cache)


def test_the_peer_cache_decides_a_partial_opening_to_a_known_peer_endpoint_early():
    eng = Engine()
    eng.process_evidence(_tcp_ev(40000, 51413, [300, -200, 124, -82, 68, -1400], 1.0, 5))
    v = flows(eng.process_evidence(_tcp_ev(40002, 51413, [301, -210, 300, -200, 300, -200], 2.0, 9)))[0]
    assert v.label == P2P and v.decided_at_packet == 2
    assert "peer_cache" in v.families_context and "peer_cache=endpoint" in v.reasons
    # the same opening to another port of that address gets no help: endpoints, not addresses
    w = flows(eng.process_evidence(_tcp_ev(40004, 8388, [301, -210, 300, -200, 300, -200], 3.0, 11)))[0]
    assert w.label == UNKNOWN and "peer_cache" not in w.families_context


def test_a_recognised_other_protocol_to_a_peer_is_normal_whatever_the_context():
    """A NAS that seeds and serves DNS and TLS: flows to it are normal_likely and say what
    they are, with the peer cache, the discovery and a P2P host score all against them."""
    eng = Engine()
    _dht(eng)
    eng.process_evidence(_tcp_ev(40000, 51413, [300, -200, 124, -82, 68, -1400], 1.0, 5))
    query = bytes.fromhex("abcd01000001000000000000") + b"\x07example\x03org\x00\x00\x01\x00\x01"
    dns = FlowEvidence(
        key=FlowKey("udp", "10.0.0.1", 5353, "10.0.0.2", 53), uid="Cq", community_id="1:q", ts=2.0,
        sizes=(len(query),), times=(0.0,), bursts=(len(query),), orig_heads=(query,), resp_heads=(),
        orig_pkts=1, complete=True,
    )
    v = flows(eng.process_evidence(dns))[0]
    assert (v.label, v.protocol) == (NORMAL, "dns") and v.families_own == ()
    hello = bytes.fromhex("160301") + (300).to_bytes(2, "big") + rnd(300, 3)
    tls = dataclasses.replace(_tcp_ev(40010, 51413, [305, -1400, 100, -1400], 3.0, 13), orig_heads=(hello,))
    w = flows(eng.process_evidence(tls))[0]  # even on the peer's BT endpoint
    assert (w.label, w.protocol) == (NORMAL, "tls") and "peer_cache" in w.families_context


def test_udp_peers_are_remembered_by_both_endpoints():
    eng = Engine()
    eng._remember_peer(FlowKey("udp", "10.0.0.1", 6881, "10.0.0.9", 6882), 1.0)
    assert set(eng._peer_cache) == {("10.0.0.9", 6882), ("10.0.0.1", 6881)}
    eng._remember_peer(FlowKey("tcp", "10.0.0.1", 40000, "10.0.0.9", 51413), 1.0)
    assert ("10.0.0.1", 40000) not in eng._peer_cache  # a TCP originator's port is ephemeral


def test_the_peer_cache_is_bounded_and_ages_out():
    eng = Engine(parse_config({"flow_table": {"peer_cache_size": 3, "peer_cache_ttl": 10.0}}))
    for i in range(5):
        eng._remember_peer(FlowKey("tcp", "10.0.0.1", 40000, f"10.0.1.{i}", 6881), float(i))
    assert list(eng._peer_cache) == [("10.0.1.2", 6881), ("10.0.1.3", 6881), ("10.0.1.4", 6881)]
    eng.now = 13.5
    assert eng._peer_cache_hit(FlowKey("tcp", "10.0.0.1", 1, "10.0.1.4", 6881))
    assert not eng._peer_cache_hit(FlowKey("tcp", "10.0.0.1", 1, "10.0.1.2", 6881))  # older than 10 s
    eng._expire_peer_cache(13.5)
    assert list(eng._peer_cache) == [("10.0.1.4", 6881)]


def test_evidence_beyond_the_budget_is_cut_to_it_and_counted():
    eng = Engine()
    n = 200_000
    sizes = tuple(300 if i % 2 == 0 else -300 for i in range(n))
    ev = FlowEvidence(
        key=FlowKey("tcp", "10.0.0.1", 40000, "10.0.0.2", 51413), uid="Cbig", community_id="1:x", ts=0.0,
        sizes=sizes, times=tuple(i / 1000 for i in range(n)), bursts=sizes,
        orig_heads=(rnd(300, 1), rnd(300, 2)), resp_heads=(rnd(1000, 3),), orig_pkts=n // 2, resp_pkts=n // 2,
        handshake=True, complete=True,
    )
    v = flows(eng.process_evidence(ev))[0]
    b = eng.cfg.budget
    assert eng.stats.evidence_truncated == 1
    assert eng.stats.detector_runs <= b.max_bursts + 2  # each burst end once, plus the confirmation
    assert v.score_path and v.score_path[-1][0] <= b.max_packets
    # evidence within the budget is left alone
    eng.process_evidence(_tcp_ev(40000, 51413, [300, -200, 124, -82], 1.0, 5))
    assert eng.stats.evidence_truncated == 1


def test_verdicts_name_own_and_context_families_apart_and_always_a_protocol():
    eng = Engine()
    _dht(eng)
    out = [flows(eng.process_evidence(_tcp_ev(40000 + i, 51413, s, 1.0 + i, 5 + i)))[0]
           for i, s in enumerate(([300, -200, 124, -82, 68, -1400], [1400, -1400, 1400, -1400, 1400]))]
    for v in out:
        d = v.to_dict()
        assert isinstance(d["protocol"], str) and d["protocol"]
        assert set(d["families"]) == set(d["families_own"]) | set(d["families_context"])
        assert not set(d["families_own"]) & {"host_context", "peer_cache"}
    assert out[0].protocol == "bt_mse" and out[1].protocol == "unknown"


def test_full_mse_shape_needs_the_bt_handshake_length_to_count_as_a_handshake():
    # shadowsocks keep-alive bursts (corpus: shadowsocks_small.pcap): shape holds, no 68 bytes
    eng = Engine()
    v = flows(eng.process_evidence(_tcp_ev(40000, 8388, [189, -517, 115, -436, 115, -675, 115, -422], 1.0, 3)))[0]
    assert v.label != P2P and "bt_len=absent" in v.reasons
