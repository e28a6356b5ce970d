"""The compiled decider: msewatch._decide (C), score.flow.decide_flow's twin.

`Engine.process_evidence` hands each flow's evidence to the compiled decider when it is built
and current; it returns the same flat decision as `score.flow.decide_flow` (the reference),
or None for evidence it leaves to the reference (a protocol other than tcp/udp, values beyond
2**48, more sizes or heads than any budget allows). Detector parameters or weights outside
what the C code handles (docs/performance.md) make the engine use the reference for all flows.

MSEWATCH_PURE_PYTHON=1 switches it off together with the compiled packet path.
tests/decide/ runs both deciders on the corpus, every capture artifact and generated evidence.
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path
from typing import Callable

try:  # built by setup.py when a C compiler is present; optional
    from . import _decide as _c
except ImportError as e:  # pragma: no cover - depends on the install
    _c = None
    _IMPORT_ERROR: str | None = str(e)
else:
    _IMPORT_ERROR = None

_stale_warned = False


def _stale() -> bool:
    """A development checkout whose _decide.c changed after the extension was built."""
    built = getattr(_c, "SOURCE_HASH", None)
    try:
        src = f"{zlib.crc32(Path(__file__).with_name('_decide.c').read_bytes()):08x}"
    except OSError:
        return False  # an installed wheel ships no source: nothing to compare
    return built is not None and built != src


def available() -> bool:
    """Is the compiled decider importable, built from the current source, and not switched off?"""
    global _stale_warned
    if _c is None or os.environ.get("MSEWATCH_PURE_PYTHON"):
        return False
    if _stale():
        if not _stale_warned:
            _stale_warned = True
            print("msewatch: the compiled decider is older than bridge/msewatch/_decide.c (run `make setup`);"
                  " deciding in Python", file=sys.stderr)
        return False
    from .config import FEATURES

    return tuple(_c.FEATURES) == tuple(FEATURES)


def status() -> str:
    """One line: which decider the engine uses, and why."""
    if os.environ.get("MSEWATCH_PURE_PYTHON"):
        return "msewatch: deciding: pure Python (MSEWATCH_PURE_PYTHON is set)"
    if _c is None:
        return (f"msewatch: deciding: pure Python - the C extension is not built ({_IMPORT_ERROR}); install gcc and"
                " python3-dev, then `make setup`")
    if _stale():
        return "msewatch: deciding: pure Python - the C extension is older than its source; run `make setup`"
    if not available():
        return "msewatch: deciding: pure Python - the C extension's features differ from config.FEATURES"
    return f"msewatch: deciding: compiled ({Path(_c.__file__).name})"


def decider(params, scoring, budget) -> Callable | None:
    """The compiled decider's `decide(ev, s_host, host_has_score, host_family, peer_hit, near)`
    for these detector parameters, scoring weights and budget, or None (then decide in Python).
    It returns (FlowVerdict, protocol, confirmed, peerlike, detector_runs) as
    Engine._decide_py does, or None for evidence beyond the budget or left to the reference."""
    if not available():
        return None
    from .config import FEATURES
    from .detect.lsd import _to_lsd_group
    from .verdict import FlowVerdict

    weights = tuple(float(scoring.weight(f)) for f in FEATURES)
    try:
        return _c.Decider(params, scoring, weights, _to_lsd_group, budget, FlowVerdict).decide
    except (ValueError, TypeError):
        return None  # parameters the C code does not take (docs/performance.md): the reference decides
