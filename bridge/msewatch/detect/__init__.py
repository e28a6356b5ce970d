"""Detectors: pure functions from a FlowEvidence snapshot to scored Observations.

No I/O and no state: the engine calls `run_detectors` a few times per flow prefix, so
every detector only looks at bounded heads (<= H bytes) and small size tuples, with
startswith/find checks and no bencode parsing. Order is cheapest-first per protocol.

The table (`DETECTORS`) and `run_detectors` live in detect/registry.py and are loaded on
first use: the configuration needs only `DetectParams`, and with the compiled decider
(msewatch/_decide.c) a run never calls the Python detectors (start-up, docs/performance.md).
"""

from __future__ import annotations

from typing import Any

from .params import DetectParams

_LAZY = frozenset({"DETECTORS", "FEATURES", "SHAPE_DETECTORS", "Detector", "DetectorFn", "run_detectors"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import registry

        value = globals()[name] = getattr(registry, name)  # once: later lookups are plain attributes
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DETECTORS", "FEATURES", "SHAPE_DETECTORS", "DetectParams", "Detector", "DetectorFn", "run_detectors"]
