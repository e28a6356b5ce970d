"""Host model: what one local host has been doing, over 10 s / 2 min / 30 min windows.

Distinct remote IPs and ports are estimated with HyperLogLog (Apache DataSketches), kept
per time bucket so a window's count is the union of its live buckets. Evidence counters
(P2P flows, encrypted peer-like flows, discovery) decay exponentially with a half-life,
so a host that stopped sharing an hour ago drifts back towards normal.

This is the reference model. The compiled one (msewatch/_decide.c HostModel) counts with the
same HyperLogLog written in C (the library's estimates, tests/decide/test_hll_parity.py), so
the library and numpy, which it loads, are imported only when this model or the compiled
model's one rare case (`composite_estimate`) needs them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ..config import HostConfig
from ..verdict import NORMAL_HOST, P2P_HOST, UNKNOWN
from .flow import sigmoid

DISCOVERY = frozenset({"dht", "tracker", "lsd"})
PEER_PROTOCOLS = frozenset({"bt_mse", "bt_plain", "utp"})


if TYPE_CHECKING:
    from datasketches import hll_sketch

hll_sketch = hll_union = _HLL_4 = None  # the library's types, bound by _load_datasketches


def _load_datasketches() -> None:
    """Import Apache DataSketches (and numpy with it) on first use."""
    global hll_sketch, hll_union, _HLL_4
    if hll_sketch is not None:
        return
    # numpy's OpenBLAS starts a thread per core that spins at start-up (40 ms of CPU per
    # process measured, and busy threads in the profile of a running bridge); msewatch never
    # multiplies a matrix. A value the user set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from datasketches import hll_sketch as sk, hll_union as un, tgt_hll_type

    hll_sketch, hll_union, _HLL_4 = sk, un, tgt_hll_type.HLL_4


def composite_estimate(image: bytes) -> float:
    """The library's estimate of a serialized HLL_8 union gadget (the compiled host model's
    union of two HLL-mode buckets: the composite estimator, whose interpolation table is the
    library's; msewatch/_decide.c composite_estimate)."""
    _load_datasketches()
    return hll_sketch.deserialize(image).get_estimate()


class _WindowedDistinct:
    """Approximate distinct count over a sliding window of `width` seconds."""

    __slots__ = ("width", "step", "lg_k", "buckets")

    def __init__(self, width: float, n_buckets: int, lg_k: int) -> None:
        _load_datasketches()
        self.width = width
        self.step = width / n_buckets
        self.lg_k = lg_k
        self.buckets: dict[int, hll_sketch] = {}

    def add(self, ts: float, item: str) -> None:
        b = int(ts // self.step)
        sk = self.buckets.get(b)
        if sk is None:
            self._expire(ts)
            sk = self.buckets[b] = hll_sketch(self.lg_k, _HLL_4)
        sk.update(item)

    def _expire(self, ts: float) -> None:
        oldest = int((ts - self.width) // self.step)
        for b in [b for b in self.buckets if b <= oldest]:
            del self.buckets[b]

    def estimate(self, ts: float) -> float:
        self._expire(ts)
        if not self.buckets:
            return 0.0
        if len(self.buckets) == 1:
            return next(iter(self.buckets.values())).get_estimate()
        u = hll_union(self.lg_k)
        for sk in self.buckets.values():
            u.update(sk)
        return u.get_estimate()


class _Decaying:
    __slots__ = ("value", "ts")

    def __init__(self) -> None:
        self.value = 0.0
        self.ts = 0.0

    def add(self, ts: float, amount: float, half_life: float) -> None:
        self.value = self.at(ts, half_life) + amount
        self.ts = max(ts, self.ts)

    def at(self, ts: float, half_life: float) -> float:
        if ts <= self.ts or self.value == 0.0:
            return self.value
        return self.value * math.pow(0.5, (ts - self.ts) / half_life)


@dataclass(frozen=True, slots=True)
class HostFlowObservation:
    """What the host model learns from one decided flow of a local host."""

    ts: float
    remote_h: str
    remote_p: int
    proto: str
    protocol: str | None  # the flow verdict's protocol guess
    p2p: bool  # the flow was labelled p2p_likely
    encrypted_peerlike: bool  # random-looking flow to a high port, P2P-shaped but unproven


class HostState:
    __slots__ = (
        "host", "first_ts", "last_ts", "flows", "ips", "ports", "p2p_flows", "enc_flows",
        "discovery", "last_discovery", "last_encrypted", "last_p2p", "near", "normal_flows", "label", "reported",
        "memo_flows", "memo_t", "memo",
    )

    def __init__(self, host: str, ts: float, cfg: HostConfig) -> None:
        self.host = host
        self.first_ts = ts
        self.last_ts = ts
        self.flows = 0
        self.ips = tuple(_WindowedDistinct(w, cfg.buckets_per_window, cfg.hll_lg_k) for w in cfg.windows)
        # distinct remote ports: only the 2-minute window is ever read (the score's fanout)
        self.ports = _WindowedDistinct(cfg.windows[1], cfg.buckets_per_window, cfg.hll_lg_k)
        self.p2p_flows = _Decaying()
        self.enc_flows = _Decaying()
        self.discovery = _Decaying()
        self.near = _Decaying()
        self.normal_flows = _Decaying()
        self.last_discovery = -math.inf
        self.last_encrypted = -math.inf
        self.last_p2p = -math.inf
        self.label = UNKNOWN
        self.reported = UNKNOWN
        # (flows, time) -> HostScore: unchanged state, same score
        self.memo_flows: int | None = None
        self.memo_t: float | None = None
        self.memo: HostScore | None = None


class HostScore(NamedTuple):
    score: float
    probability: float
    label: str
    reasons: tuple[str, ...]


class HostModel:
    """Per-host state for local hosts; bounded by `max_hosts` (least recently seen evicted)."""

    def __init__(self, cfg: HostConfig) -> None:
        self.cfg = cfg
        self.hosts: dict[str, HostState] = {}

    def _state(self, host: str, ts: float) -> HostState:
        st = self.hosts.get(host)
        if st is None:
            if len(self.hosts) >= self.cfg.max_hosts:
                oldest = min(self.hosts.values(), key=lambda h: h.last_ts)
                del self.hosts[oldest.host]
            st = self.hosts[host] = HostState(host, ts, self.cfg)
        return st

    def observe(self, host: str, o: HostFlowObservation) -> None:
        self.observe_flow(host, o.ts, o.remote_h, o.remote_p, o.protocol, o.p2p, o.encrypted_peerlike)

    def observe_flow(
        self, host: str, ts: float, remote_h: str, remote_p: int, protocol: str | None, p2p: bool, peerlike: bool
    ) -> None:
        """What the host learns from one decided flow (HostFlowObservation's fields)."""
        cfg = self.cfg
        st = self._state(host, ts)
        if ts > st.last_ts:
            st.last_ts = ts
        st.flows += 1
        if remote_p >= 1024:
            for w in st.ips:
                w.add(ts, remote_h)
            st.ports.add(ts, str(remote_p))
        hl = cfg.half_life
        if p2p and protocol in DISCOVERY:
            st.discovery.add(ts, 1.0, hl)
            if ts > st.last_discovery:
                st.last_discovery = ts
            if ts - st.last_encrypted <= cfg.discovery_delta:
                st.near.add(ts, 1.0, hl)
        elif p2p:
            st.p2p_flows.add(ts, 1.0, hl)
            if ts > st.last_p2p:
                st.last_p2p = ts
        elif peerlike:
            st.enc_flows.add(ts, 1.0, hl)
            if ts > st.last_encrypted:
                st.last_encrypted = ts
            if ts - st.last_discovery <= cfg.discovery_delta:
                st.near.add(ts, 1.0, hl)
        else:
            st.normal_flows.add(ts, 1.0, hl)

    def p2p_activity_near(self, host: str, ts: float) -> str | None:
        """Which P2P activity of `host` lies within discovery_delta of `ts`, if any.

        Discovery (DHT, tracker, LSD) or a recognised peer flow shortly before or after a
        flow starts is the host-level evidence family for that flow."""
        st = self.hosts.get(host)
        if st is None:
            return None
        d = self.cfg.discovery_delta
        if abs(ts - st.last_discovery) <= d:
            return "discovery"
        if abs(ts - st.last_p2p) <= d:
            return "p2p_flow"
        return None

    def score(self, host: str, ts: float | None = None, detail: bool = False) -> HostScore:
        """The host's score at `ts` (default: its last activity). Reasons are built only
        with `detail` (when a host verdict is written): flows need just the number."""
        st = self.hosts.get(host)
        cfg = self.cfg
        if st is None:
            return HostScore(cfg.bias, sigmoid(cfg.bias), UNKNOWN, ())
        t = st.last_ts if ts is None else ts
        if not detail and st.memo_flows == st.flows and (st.memo_t is t or st.memo_t == t):
            return st.memo  # type: ignore[return-value]
        hl = cfg.half_life
        pow_ = math.pow
        # _Decaying.at, inlined for the five counters
        d = st.p2p_flows
        p2p = d.value if t <= d.ts or d.value == 0.0 else d.value * pow_(0.5, (t - d.ts) / hl)
        d = st.enc_flows
        enc = d.value if t <= d.ts or d.value == 0.0 else d.value * pow_(0.5, (t - d.ts) / hl)
        d = st.discovery
        disc = d.value if t <= d.ts or d.value == 0.0 else d.value * pow_(0.5, (t - d.ts) / hl)
        d = st.near
        near = d.value if t <= d.ts or d.value == 0.0 else d.value * pow_(0.5, (t - d.ts) / hl)
        d = st.normal_flows
        normal = d.value if t <= d.ts or d.value == 0.0 else d.value * pow_(0.5, (t - d.ts) / hl)
        # Karagiannis: for P2P, distinct remote IPs ~ distinct remote ports (both high).
        ips = st.ips[1].estimate(t)
        ports = st.ports.estimate(t)
        fanout = min(ips, ports)
        s = (
            cfg.bias
            + cfg.w_p2p_flows * math.log1p(p2p)
            + cfg.w_encrypted_peerlike * math.log1p(enc)
            + cfg.w_discovery * math.log1p(disc)
            + cfg.w_discovery_near_encrypted * math.log1p(near)
            + cfg.w_peer_fanout * math.log1p(fanout)
            + cfg.w_normal_flows * normal
        )
        p = sigmoid(s)
        reasons = () if not detail else (
            f"p2p_flows={p2p:.1f}",
            f"encrypted_peerlike={enc:.1f}",
            f"discovery={disc:.1f}",
            f"discovery_near_encrypted={near:.1f}",
            f"remote_ips_2m={ips:.0f}",
            f"remote_ports_2m={ports:.0f}",
            f"remote_ips_10s={st.ips[0].estimate(t):.0f}",
            f"remote_ips_30m={st.ips[2].estimate(t):.0f}",
            f"flows={st.flows}",
        )
        if p >= cfg.t_high:
            label = P2P_HOST
        elif p <= cfg.t_low and st.flows >= cfg.min_flows:
            label = NORMAL_HOST
        else:
            label = UNKNOWN
        # hysteresis: once P2P, a host stays P2P until its evidence decays below t_low
        if st.label == P2P_HOST and label == UNKNOWN:
            label = P2P_HOST
        st.label = label
        hs = HostScore(s, p, label, reasons)
        st.memo_flows, st.memo_t, st.memo = st.flows, t, hs
        return hs
