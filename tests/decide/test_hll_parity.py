"""The compiled host model's distinct counts (msewatch/_decide.c: DataSketches' HyperLogLog
written in C) against score/host.py's, which call the library itself: the same estimate for
every window at every step, on random streams that take the sketches and the window unions
through every mode - coupon lists, coupon sets, HLL registers with the HIP estimator, unions
that promote while merging, HLL sources merged into list or set gadgets and the reverse, and
two HLL buckets merged out of order (the composite estimate, which the compiled model asks
the library for) - at every lg_k the configuration takes."""

from __future__ import annotations

import random

import pytest

from msewatch import compiled
from msewatch.config import HostConfig
from msewatch.score import host as pyhost

_decide = compiled.module("_decide")
pytestmark = pytest.mark.skipif(_decide is None, reason="msewatch._decide not built")


def _models(cfg: HostConfig):
    calls = []

    def composite(image: bytes) -> float:
        calls.append(len(image))
        return pyhost.composite_estimate(image)

    return pyhost.HostModel(cfg), _decide.HostModel(cfg, composite, pyhost.HostScore), calls


def _py_distinct(model, host, ts):
    st = model.hosts[host]
    return tuple(w.estimate(ts) for w in st.ips) + (st.ports.estimate(ts),)


def _py_modes(model, host):
    """The library's modes of the host's bucket sketches (preamble ints: 2 list, 3 set, 10 HLL)."""
    st = model.hosts[host]
    return {sk.serialize_updatable()[0] for w in (*st.ips, st.ports) for sk in w.buckets.values()}


def _drive(cfg: HostConfig, seed: int, bursts: int):
    """Bursts of flows to new and repeated remotes, each within a few buckets, sized around
    the set's promotion point (3/4 of 2^(lg_k-3) coupons), with jumps of one or several
    buckets (and of whole windows) between them; estimates compared often within a burst."""
    rng = random.Random(seed)
    py, c, calls = _models(cfg)
    modes: set[int] = set()
    hosts = ["10.0.0.1", "10.0.0.2", "fd00::7"]
    promote = max(8, 3 * (1 << cfg.hll_lg_k) // 32)
    t = 1_700_000_000.0
    for burst in range(bursts):
        host = rng.choice(hosts)
        n = rng.choice((1, 3, 7, 8, 9, promote // 2, promote, promote + 1, 2 * promote, 3 * promote))
        universe = rng.choice((n // 2 + 1, n, 4 * n + 10, 1 << 30))
        dt = rng.choice((0.0, 0.001, 0.05)) * 8 / max(n, 8)
        for i in range(n):
            t += dt
            r = rng.randrange(universe)
            remote = f"198.{r % 251}.{r // 251 % 256}.{r // 64256 % 256}"
            port = rng.choice((1024, 6881, 51413, 1024 + r % 64000))
            py.observe_flow(host, t, remote, port, None, False, False)
            c.observe_flow(host, t, remote, port, None, False, False)
            if rng.random() < 8 / n or i == n - 1:
                q = t + rng.choice((0.0, 0.0, 1.0, 7.0, 100.0))
                for h in hosts:
                    if h in py.hosts:
                        assert c.distinct(h, q) == _py_distinct(py, h, q), (seed, burst, i, h)
                        modes |= _py_modes(py, h)
        t += rng.choice((0.0, 1.0, 3.0, 20.0, 40.0, 130.0, 500.0, 2000.0))
    return modes, calls


@pytest.mark.parametrize("lg_k", [4, 5, 7, 8, 9, 10, 12, 16])
def test_window_estimates_equal_the_library(lg_k):
    cfg = HostConfig(hll_lg_k=lg_k, windows=(10.0, 120.0, 1800.0), buckets_per_window=4)
    modes, calls = _drive(cfg, seed=lg_k, bursts=120)
    assert 10 in modes  # HLL registers reached
    if lg_k >= 8:
        assert 3 in modes  # coupon sets (below lg_k 8 a full list goes straight to HLL)
    assert calls, "no union merged two HLL buckets: the composite estimate was not compared"


def test_other_buckets_and_windows():
    cfg = HostConfig(hll_lg_k=10, windows=(3.0, 20.0, 90.0), buckets_per_window=7)
    _drive(cfg, seed=99, bursts=120)


def test_items_hash_as_the_library_hashes_them():
    """Non-ASCII text (UTF-8 bytes), the empty string (a bucket that counts nothing), long items
    (several MurmurHash blocks) and ports as str(int)."""
    cfg = HostConfig()
    py, c, _ = _models(cfg)
    items = ["", "é", "2001:db8::ff00:42:8329", "x" * 17, "y" * 31, "z" * 48, "ünïcødé-ホスト", "10.0.0.9"]
    t = 100.0
    for k, it in enumerate(items * 3):
        for m in (py, c):
            m.observe_flow("10.1.1.1", t + k, it, 1024 + k, None, False, False)
        assert c.distinct("10.1.1.1", t + k) == _py_distinct(py, "10.1.1.1", t + k)
    # a port given as an int subclass is hashed as its str(), as score/host.py does
    class Port(int):
        def __str__(self) -> str:
            return "port-" + int.__str__(self)

    for m in (py, c):
        m.observe_flow("10.1.1.2", t, "10.9.9.9", Port(4000), None, False, False)
    assert c.distinct("10.1.1.2", t) == _py_distinct(py, "10.1.1.2", t)


def test_coupon_mode_estimate_for_every_count():
    """One bucket taking distinct items one by one at lg_k 16: the list, then the set through
    its growths, up to the promotion to registers (6,144 coupons) and past it (HIP)."""
    cfg = HostConfig(hll_lg_k=16)
    py, c, _ = _models(cfg)
    for i in range(6300):
        for m in (py, c):
            m.observe_flow("10.2.2.2", 50.0, f"item-{i}", 1024, None, False, False)
        assert c.distinct("10.2.2.2", 50.0) == _py_distinct(py, "10.2.2.2", 50.0), i
    assert _py_modes(py, "10.2.2.2") == {2, 10}  # the addresses in registers, the one port in a list


def test_coupon_knots_are_the_ones_the_tool_derives():
    """tools/hll_constants.py solves the four knots, calibrates them against the library for
    every coupon count and compares them with COUPON_Y in _decide.c."""
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[2] / "tools" / "hll_constants.py"
    p = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "COUPON_Y: the same" in p.stdout
