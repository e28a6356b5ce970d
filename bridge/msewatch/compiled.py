"""The optional compiled modules (setup.py builds them when a C compiler is there):

    _fastpath   the offline packet path (msewatch/fastpath.py drives it)
    _decide     deciding one flow: score.flow.decide_flow in C (msewatch/fastdecide.py)
    _wire       flow_evidence decoding and verdict encoding for the bridge (wire/events.py)

Each has a pure-Python twin that stays the reference and the fallback: without a compiler,
with MSEWATCH_PURE_PYTHON set, or when a development build is older than its C source (the
CRC-32 of the source is compiled in), the Python code runs, with the same results.
"""

from __future__ import annotations

import importlib
import os
import sys
import zlib
from pathlib import Path
from types import ModuleType

_loaded: dict[str, tuple[ModuleType | None, str]] = {}
_warned: set[str] = set()


def pure_python() -> bool:
    """MSEWATCH_PURE_PYTHON is set: every compiled module is switched off."""
    return bool(os.environ.get("MSEWATCH_PURE_PYTHON"))


def _load(name: str) -> tuple[ModuleType | None, str]:
    hit = _loaded.get(name)
    if hit is not None:
        return hit
    try:
        mod: ModuleType | None = importlib.import_module(f"msewatch.{name}")
        why = ""
    except ImportError as e:
        mod, why = None, f"the C extension is not built ({e}); install gcc and python3-dev, then `make setup`"
    if mod is not None:
        built = getattr(mod, "SOURCE_HASH", None)
        try:
            src = f"{zlib.crc32(Path(__file__).with_name(name + '.c').read_bytes()):08x}"
        except OSError:
            src = None  # an installed wheel ships no source: nothing to compare
        if built is not None and src is not None and built != src:
            mod, why = None, f"the C extension is older than bridge/msewatch/{name}.c; run `make setup`"
    _loaded[name] = (mod, why)
    return mod, why


def module(name: str) -> ModuleType | None:
    """The compiled module `name` when it is built, current and not switched off; a stale
    build is announced once on stderr."""
    if pure_python():
        return None
    mod, why = _load(name)
    if mod is None and why.startswith("the C extension is older") and name not in _warned:
        _warned.add(name)
        print(f"msewatch: {why} (using the pure-Python path)", file=sys.stderr)
    return mod


def status(name: str, what: str) -> str:
    """One line saying whether `what` runs compiled, and why not."""
    if pure_python():
        return f"msewatch: {what}: pure Python (MSEWATCH_PURE_PYTHON is set)"
    mod, why = _load(name)
    if mod is None:
        return f"msewatch: {what}: pure Python - {why}"
    return f"msewatch: {what}: compiled ({Path(mod.__file__ or name).name})"
