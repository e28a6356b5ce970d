"""The compiled packet path against the Python one (sources/pcap.py + Engine.process_packet):
identical evidence, verdicts (uids included), engine and read counters on every corpus capture,
on the corpus as pcapng, on damaged captures, and on generated packet sequences that drive
eviction, idle sweeps, flow re-creation and every budget end with small limits."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msewatch import fastpath
from msewatch.config import parse_config
from msewatch.engine import Engine, run_pcaps
from msewatch.sources.pcap import PcapError

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
CAPTURES = sorted(CORPUS.glob("*.pcap"))


class Recording(Engine):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.evidence = []

    def on_evidence(self, ev):
        self.evidence.append(ev)


def run(paths, pure: bool, monkeypatch, cfg=None):
    """(verdict dicts, evidence, engine stats, read stats, error text) of run_pcaps, then the
    flush the CLI does after an error."""
    if pure:
        monkeypatch.setenv("MSEWATCH_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("MSEWATCH_PURE_PYTHON", raising=False)
    eng = Recording(cfg)
    assert fastpath.usable(eng) is not pure
    out, rs, err = [], [], None
    try:
        for v in run_pcaps([str(p) for p in paths], eng, None, rs):
            out.append(v.to_dict())
    except PcapError as e:
        err = str(e)
        out.append("error")
        out.extend(v.to_dict() for v in eng.flush())
    return out, eng.evidence, asdict(eng.stats), [(p, asdict(s)) for p, s in rs], err


def assert_identical(paths, monkeypatch, compiled, cfg=None):
    ref = run(paths, True, monkeypatch, cfg)
    got = run(paths, False, monkeypatch, cfg)
    assert got[4] == ref[4], "errors differ"
    assert got[3] == ref[3], "read counters differ"
    assert got[2] == ref[2], "engine counters differ"
    assert got[1] == ref[1], "evidence differs"
    assert got[0] == ref[0], "verdicts differ"
    return ref


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_each_corpus_capture_gives_identical_evidence_and_verdicts(capture, monkeypatch, compiled):
    out, evidence, *_ = assert_identical([capture], monkeypatch, compiled)
    assert evidence and out


def test_the_whole_corpus_in_one_run_gives_identical_verdicts(monkeypatch, compiled):
    """Flows, hosts and the peer cache carry over from file to file."""
    out, *_ = assert_identical(CAPTURES, monkeypatch, compiled)
    assert sum(1 for v in out if v["type"] == "flow") > 300


def test_small_limits_evict_sweep_and_time_out_alike_on_the_corpus(monkeypatch, compiled):
    cfg = parse_config({"flow_table": {"max_flows": 16, "tcp_idle_timeout": 2.0, "udp_idle_timeout": 1.0,
                                       "sweep_interval": 0.5, "peer_cache_size": 8, "peer_cache_ttl": 5.0},
                        "budget": {"max_packets": 5, "max_bursts": 3, "head_bytes": 32, "udp_heads": 2,
                                   "max_age": 1.0}})
    out, _, stats, *_ = assert_identical(CAPTURES, monkeypatch, compiled, cfg)
    assert stats["flows_evicted"] > 100 and stats["flows_expired"] > 10


def test_the_corpus_as_pcapng_gives_identical_verdicts(tmp_path, monkeypatch, compiled):
    import dpkt

    paths = []
    for src in CAPTURES[:8]:
        ng = tmp_path / (src.stem + ".pcapng")
        with open(src, "rb") as fi, open(ng, "wb") as fo:
            r = dpkt.pcap.Reader(fi)
            w = dpkt.pcapng.Writer(fo, linktype=r.datalink())
            for ts, buf in r:
                w.writepkt(buf, ts=ts)
        paths.append(ng)
    assert_identical(paths, monkeypatch, compiled)


@pytest.mark.parametrize("where", [0.3, 0.7, "record-header", "caplen"])
def test_a_damaged_capture_fails_alike_with_the_verdicts_before_it(tmp_path, monkeypatch, compiled, where):
    src = CORPUS / "swarm.pcap"
    data = src.read_bytes()
    if isinstance(where, float):
        damaged = data[: int(len(data) * where)]
    else:
        # walk the records to the middle one, then damage it
        off, n = 24, 0
        while off + 16 <= len(data) and n < 300:
            caplen = struct.unpack_from("<I", data, off + 8)[0]
            off += 16 + caplen
            n += 1
        if where == "record-header":
            damaged = data[: off + 7]
        else:
            damaged = data[: off + 8] + struct.pack("<I", 1 << 30) + data[off + 12:]
    bad = tmp_path / "damaged.pcap"
    bad.write_bytes(damaged)
    out, _, _, _, err = assert_identical([CORPUS / "dns.pcap", bad, CORPUS / "dht_local.pcap"], monkeypatch, compiled)
    assert err and str(bad) in err and "byte offset" in err
    assert out.index("error") > 0  # verdicts decided before the error came first


# --- generated packet sequences (hand-made packets: a unit test of the state machine) ----------

A4 = [bytes([10, 0, 0, i]) for i in (1, 2, 3)] + [bytes([198, 51, 100, 7])]
A6 = [bytes.fromhex("fd00000000000000000000000000000" + str(i)) for i in (1, 2)]
FLAGS = [0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x01, 0x03, 0x00, 0x06]

packet = st.tuples(
    st.floats(min_value=-0.5, max_value=4.0),  # time step (captures may step back)
    st.sampled_from([6, 6, 17]),
    st.booleans(),  # IPv6
    st.integers(0, 3), st.integers(0, 3),  # address picks
    st.integers(1000, 1012), st.sampled_from([1000, 6881, 40000]),
    st.sampled_from(FLAGS),
    st.sampled_from([0, 0, 1, 20, 68, 96, 300]),
    st.sampled_from(["random", "random", "bt", "dht"]),
)

# plaintext P2P starts, so that flows get decided P2P and feed the peer cache and host context
BT = b"\x13BitTorrent protocol" + bytes(8) + b"I" * 20 + b"P" * 20
DHT = b"d1:ad2:id20:" + b"N" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe"


def payload(rnd, kind, n):
    if not n:
        return b""
    if kind == "bt":
        return BT
    if kind == "dht":
        return DHT
    return rnd.randbytes(n)

limits = st.fixed_dictionaries({
    "flow_table": st.fixed_dictionaries({
        "max_flows": st.integers(16, 20),
        "tcp_idle_timeout": st.sampled_from([1.0, 3.0, 30.0]),
        "udp_idle_timeout": st.sampled_from([0.5, 2.0, 60.0]),
        "sweep_interval": st.sampled_from([0.25, 1.0, 5.0]),
        "peer_cache_ttl": st.sampled_from([1.0, 300.0]),
    }),
    "budget": st.fixed_dictionaries({
        "max_packets": st.integers(2, 6),
        "max_bursts": st.integers(2, 4),
        "head_bytes": st.sampled_from([16, 64, 256]),
        "udp_heads": st.integers(1, 3),
        "max_age": st.sampled_from([0.5, 5.0, 10.0]),
    }),
})


def feed_python(cfg, pkts, max_flows):
    eng = Recording(cfg)
    eng._max_flows = max_flows  # below the config's floor of 16, so short sequences evict too
    for p in pkts:
        eng.process_packet(*p)
    return eng


def feed_c(cfg, pkts, max_flows, hand_back_at):
    eng = Recording(cfg)
    eng._max_flows = max_flows
    table = fastpath.make_table(eng)
    for i, p in enumerate(pkts):
        if i == hand_back_at:  # the rest goes through Python: the handed-back state must be exact
            fastpath.hand_back(table, eng)
            table = None
        if table is None:
            eng.process_packet(*p)
        else:
            table.packet(*p)
    if table is not None:
        fastpath.hand_back(table, eng)
    return eng


def summary(eng):
    verdicts = [v.to_dict() for v in eng.flush()]
    flows = {k: (f.proto, f.oh, f.op, f.rh, f.rp, f.ts, f.last, f.st, f.opkts, f.rbytes) for k, f in eng.flows.items()}
    return eng.evidence, verdicts, asdict(eng.stats), eng.now, eng._next_sweep, flows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lim=limits, steps=st.lists(packet, min_size=1, max_size=200), seed=st.integers(0, 2**16),
       hand_back_frac=st.floats(0, 1.2), max_flows=st.integers(1, 8))
def test_generated_sequences_take_the_same_path_through_both_tables(lim, steps, seed, hand_back_frac, max_flows):
    assert fastpath.available(), fastpath.status()
    cfg = parse_config(lim)
    rnd = random.Random(seed)
    ts = 1_700_000_000.0
    pkts = []
    for dt, proto, v6, a, b, sport, dport, flags, n, kind in steps:
        ts += dt
        pool = A6 if v6 else A4
        src, dst = pool[a % len(pool)], pool[b % len(pool)]
        if rnd.random() < 0.5:
            src, sport, dst, dport = dst, dport, src, sport
        pkts.append((ts, proto, src, sport, dst, dport, flags if proto == 6 else 0, payload(rnd, kind, n)))
    hand_back_at = int(hand_back_frac * len(pkts))
    ref = feed_python(cfg, pkts, max_flows)
    got = feed_c(cfg, pkts, max_flows, hand_back_at)
    # state before the flush: the same open flows in the same LRU order, the same clocks
    assert list(got.flows) == list(ref.flows)
    assert (got.now, got._next_sweep) == (ref.now, ref._next_sweep)
    assert summary(got) == summary(ref)


# --- the command line ---------------------------------------------------------------------------

def analyze(args, pure: bool):
    env = dict(os.environ)
    env.pop("MSEWATCH_PURE_PYTHON", None)
    if pure:
        env["MSEWATCH_PURE_PYTHON"] = "1"
    return subprocess.run([sys.executable, "-m", "msewatch", "analyze", "--no-progress", *map(str, args)],
                          capture_output=True, text=True, env=env)


def test_analyze_output_summary_and_exit_status_are_identical(tmp_path, compiled):
    src = (CORPUS / "mse_rc4_libtorrent_transmission.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(src[: len(src) * 2 // 3])
    for args, code in (([CORPUS / "swarm.pcap", CORPUS / "dns.pcap"], 0), ([CORPUS / "dht_local.pcap", cut], 2)):
        ref, got = analyze(args, True), analyze(args, False)
        assert (got.returncode, got.stdout, got.stderr) == (ref.returncode, ref.stdout, ref.stderr)
        assert ref.returncode == code and ref.stdout.count("\n") > 3
    assert "byte offset" in ref.stderr and ref.stderr.count("msewatch: error:") == 1


def test_without_the_extension_the_python_path_runs(monkeypatch):
    monkeypatch.setattr(fastpath, "_c", None)
    monkeypatch.delenv("MSEWATCH_PURE_PYTHON", raising=False)
    eng = Engine()
    assert not fastpath.usable(eng)
    assert "pure Python" in fastpath.status() and "not built" in fastpath.status()
    assert any(v.label == "p2p_likely" for v in run_pcaps([str(CORPUS / "mse_rc4_libtorrent_transmission.pcap")], eng))


def test_an_engine_that_overrides_the_packet_path_keeps_the_python_path(compiled):
    class Custom(Engine):
        def process_packet(self, *a):
            return super().process_packet(*a)

    assert not compiled.usable(Custom()) and compiled.usable(Engine())
