"""The compiled decider: msewatch._decide (C), score.flow.decide_flow's twin.

`Engine.process_evidence` hands each flow's evidence to the compiled decider when it is built
and current; it returns what `Engine._decide_py` makes of `score.flow.decide_flow` (the
reference): the verdict, the protocol, whether the flow is P2P on its own evidence, whether
it counts as peer-like for the host, and the detector runs, or None for evidence beyond the
budget (the engine cuts it and asks again) or evidence it leaves to the reference (a protocol
other than tcp/udp, values beyond 2**48, non-float times). Detector parameters outside what
the C code takes (docs/performance.md) make the engine decide every flow in Python.

MSEWATCH_PURE_PYTHON=1 switches it off with the other compiled modules (msewatch/compiled.py).
tests/decide/ runs both deciders on the corpus, every capture artifact and generated evidence.
"""

from __future__ import annotations

from typing import Callable

from . import compiled


def available() -> bool:
    """Is the compiled decider built, current, not switched off, and of the same features?"""
    mod = compiled.module("_decide")
    if mod is None:
        return False
    from .config import FEATURES

    return tuple(mod.FEATURES) == tuple(FEATURES)


def status() -> str:
    """One line: which decider the engine uses, and why."""
    line = compiled.status("_decide", "deciding")
    if "compiled" in line and not available():
        return "msewatch: deciding: pure Python - the C extension's features differ from config.FEATURES"
    return line


def decider(params, scoring, budget) -> Callable | None:
    """The compiled `decide(ev, s_host, host_has_score, host_family, peer_hit, near)` for these
    detector parameters, scoring weights and budget, or None (then decide in Python)."""
    if not available():
        return None
    from .config import FEATURES
    from .detect.lsd import _to_lsd_group
    from .verdict import FlowVerdict

    mod = compiled.module("_decide")
    weights = tuple(float(scoring.weight(f)) for f in FEATURES)
    try:
        return mod.Decider(params, scoring, weights, _to_lsd_group, budget, FlowVerdict).decide
    except (ValueError, TypeError):
        return None  # parameters the C code does not take (docs/performance.md): the reference decides


def host_model(cfg):
    """The compiled host model (score/host.py's HostModel in C: the same numbers, its
    HyperLogLog the library's in C) for this HostConfig, or None (then the Python one)."""
    if not available():
        return None
    from .score.host import HostScore, composite_estimate

    try:
        return compiled.module("_decide").HostModel(cfg, composite_estimate, HostScore)
    except (ValueError, TypeError):
        return None


def processor(engine, steps: tuple[str, ...]) -> Callable | None:
    """Engine.process_evidence's common path in C (`Decider.process`) bound to this engine's
    state, or None: no compiled decider or host model, or an engine subclass that overrides
    one of `steps` (its override must run)."""
    decide = engine._decide_c
    if decide is None or type(engine.hosts).__module__ != "msewatch._decide":
        return None
    from .engine import Engine

    cls = type(engine)
    if any(getattr(cls, m) is not getattr(Engine, m) for m in steps):
        return None
    decider = decide.__self__
    cfg = engine.cfg
    bias = cfg.host.bias
    if type(bias) is not float:
        return None
    decider.bind(engine, engine._local_cache, engine.hosts, engine._peer_cache, engine._local_host,
                 engine._remember_peer, engine._host_verdict, engine.stats, bias, float(cfg.host.family_threshold),
                 float(cfg.flow_table.peer_cache_ttl))
    return decider.process
