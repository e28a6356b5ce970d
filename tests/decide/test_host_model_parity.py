"""The compiled host model (msewatch/_decide.c HostModel) against score/host.py's: the same
scores, labels, reasons and host states for every call, on random flows of many hosts over
long and jumping time spans (windows expiring, buckets re-made by late flows, hosts evicted
at max_hosts), with the default and with other host settings."""

from __future__ import annotations

import random

import pytest

from msewatch import fastdecide
from msewatch.config import HostConfig
from msewatch.score.host import HostModel


def _pair(cfg: HostConfig):
    c = fastdecide.host_model(cfg)
    assert c is not None, fastdecide.status()  # CI builds it: missing is a defect
    return HostModel(cfg), c


def _same_state(a, b):
    assert sorted(a.hosts) == sorted(b.hosts)
    for h in a.hosts:
        sa, sb = a.hosts[h], b.hosts[h]
        assert (sa.last_ts, sa.flows, sa.label, sa.reported) == (sb.last_ts, sb.flows, sb.label, sb.reported), h
        assert type(sa.last_ts) is type(sb.last_ts)
        for name in ("p2p_flows", "enc_flows", "discovery", "near", "normal_flows"):
            assert (getattr(sa, name).value, getattr(sa, name).ts) == (getattr(sb, name).value, getattr(sb, name).ts)
        assert (sa.last_discovery, sa.last_encrypted, sa.last_p2p) == (sb.last_discovery, sb.last_encrypted, sb.last_p2p)


@pytest.mark.parametrize("cfg", [
    HostConfig(),
    HostConfig(windows=(5.0, 60.0, 600.0), buckets_per_window=3, hll_lg_k=6, max_hosts=7, discovery_delta=10.0,
               half_life=30.0, min_flows=1, t_high=0.6, t_low=0.4, w_peer_fanout=1.5),
], ids=["default", "small"])
def test_random_flows_score_the_same(cfg):
    rng = random.Random(4)
    py, c = _pair(cfg)
    hosts = [f"10.0.{i // 250}.{i % 250}" for i in range(12)] + ["fd00::1"]
    t = 1_700_000_000.0
    for i in range(6000):
        t += rng.choice((0.0, 0.001, 0.5, 3.0, 40.0, 400.0)) if rng.random() < 0.9 else -rng.choice((1.0, 50.0, 2000.0))
        host = rng.choice(hosts)
        ts = t if rng.random() < 0.95 else float(int(t))
        args = (host, ts, f"198.51.{rng.randrange(4)}.{rng.randrange(256)}", rng.choice((80, 443, 1023, 1024, 6881,
                rng.randrange(1024, 65536))), rng.choice((None, "dht", "tracker", "lsd", "bt_mse", "utp", "tls")),
                rng.random() < 0.3, rng.random() < 0.3)
        py.observe_flow(*args)
        c.observe_flow(*args)
        for h in (host, rng.choice(hosts)):
            detail = rng.random() < 0.1
            assert tuple(py.score(h, detail=detail)) == tuple(c.score(h, detail=detail)), (i, h)
            q = ts + rng.choice((-100.0, 0.0, 30.0, 70.0))
            assert py.p2p_activity_near(h, q) == c.p2p_activity_near(h, q)
            if rng.random() < 0.05:
                assert tuple(py.score(h, ts=q)) == tuple(c.score(h, ts=q))
            if h in py.hosts and rng.random() < 0.2:
                py.hosts[h].reported = c.hosts[h].reported = py.score(h).label
    _same_state(py, c)
