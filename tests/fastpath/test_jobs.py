"""`msewatch analyze --jobs N` (msewatch/jobs.py): the same output as one process where the
design promises it (hosts that share flows are decided together), the documented difference
where it does not (the peer cache between host groups), and the same errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "corpus"
sys.path.insert(0, str(REPO / "benchmarks"))


def analyze(*args, pure=False):
    env = dict(os.environ)
    env.pop("MSEWATCH_PURE_PYTHON", None)
    if pure:
        env["MSEWATCH_PURE_PYTHON"] = "1"
    return subprocess.run([sys.executable, "-m", "msewatch", "analyze", "--no-progress", *map(str, args)],
                          capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """The benchmark capture in small: the corpus merged and repeated 3 times, each copy with
    its own private addresses (so three host groups)."""
    import common

    return common.build_bench_capture(target_packets=60_000, out=tmp_path_factory.mktemp("bench"))


def test_jobs_2_and_3_write_exactly_what_one_process_writes(copies, compiled):
    from msewatch.config import Config
    from msewatch.jobs import plan

    p = plan(Config(), [str(copies)], 3)
    assert all(n > 0 for n in p.flows_per_shard), "the plan must spread the groups"
    one = analyze(copies)
    assert one.returncode == 0 and one.stdout.count("\n") > 1000
    for jobs in (2, 3):
        many = analyze(copies, "--jobs", jobs)
        assert (many.returncode, many.stdout, many.stderr) == (one.returncode, one.stdout, one.stderr)


def test_a_damaged_capture_under_jobs_gives_the_same_verdicts_error_and_exit_status(copies, tmp_path, compiled):
    data = copies.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2 + 5])
    one, two = analyze(cut), analyze(cut, "--jobs", "2")
    assert one.returncode == 2 and "byte offset" in one.stderr
    assert (two.returncode, two.stdout, two.stderr) == (one.returncode, one.stdout, one.stderr)


def _rewrite(src: Path, dst: Path, old: str, new: str, dt: float) -> None:
    a, b = socket.inet_aton(old), socket.inet_aton(new)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        r = dpkt.pcap.Reader(fi)
        w = dpkt.pcap.Writer(fo, linktype=r.datalink())
        for ts, buf in r:
            e = dpkt.ethernet.Ethernet(buf)
            if isinstance(e.data, dpkt.ip.IP):
                ip = e.data
                ip.src = b if ip.src == a else ip.src
                ip.dst = b if ip.dst == a else ip.dst
                buf = bytes(e)
            w.writepkt(buf, ts=float(ts) + dt)


def test_the_peer_cache_is_not_shared_between_host_groups_in_different_workers(tmp_path, compiled):
    """Two clients that share no flow, each downloading from the same (non-local) peer: in one
    process the second client's flows find the peer in the peer cache; with --jobs 3 the
    clients are decided in different workers and they do not. That is the whole difference."""
    from msewatch.config import load_config
    from msewatch.jobs import plan

    src = CORPUS / "plain_libtorrent_transmission.pcap"
    second = tmp_path / "second_client.pcap"
    _rewrite(src, second, "10.77.0.11", "10.78.0.11", dt=30.0)
    cfg = tmp_path / "two_clients.yaml"
    cfg.write_text("host:\n  local_nets: [10.77.0.11/32, 10.78.0.11/32]\n")
    p = plan(load_config(cfg), [str(src), str(second)], 3)
    assert p.host_shard["10.77.0.11"] != p.host_shard["10.78.0.11"]
    one = analyze(src, second, "-c", cfg, "-q")
    two = analyze(src, second, "-c", cfg, "-q", "--jobs", "3")
    assert one.returncode == two.returncode == 0
    a = [json.loads(x) for x in one.stdout.splitlines()]
    b = [json.loads(x) for x in two.stdout.splitlines()]
    assert [v.get("uid") for v in a] == [v.get("uid") for v in b]  # same flows, same order, same uids
    differ = [(v, w) for v, w in zip(a, b) if v != w]
    assert differ, "the second client's flows should have hit the peer cache in one process"
    for v, w in differ:
        assert v["orig_h"] == "10.78.0.11" or v["resp_h"] == "10.78.0.11"
        assert any(r.startswith("peer_cache=") for r in v["reasons"])
        assert not any(r.startswith("peer_cache=") for r in w["reasons"])
        strip = lambda d: {k: x for k, x in d.items() if k not in ("reasons", "families", "probability",  # noqa: E731
                                                                   "score_path", "families_context")}
        assert strip(v) == strip(w) or v["label"] == "p2p_likely"


def test_jobs_without_the_compiled_path_runs_one_process_and_says_so(compiled):
    cap = CORPUS / "dht_local.pcap"
    ref = analyze(cap, "-q")
    got = analyze(cap, "-q", "--jobs", "2", pure=True)
    assert got.returncode == 0 and got.stdout == ref.stdout
    assert "--jobs needs the compiled packet path" in got.stderr and "using 1 job" in got.stderr


@pytest.mark.parametrize("bad", ["-1", "two"])
def test_a_bad_jobs_value_is_a_usage_error(bad):
    p = analyze(CORPUS / "dns.pcap", "--jobs", bad)
    assert p.returncode == 2 and "--jobs" in p.stderr and "Traceback" not in p.stderr
