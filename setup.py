"""Build hooks; everything else about the build is in pyproject.toml.

1. Assets (opspkg): ship the repository's rule pack and Zeek scripts inside the wheel.
   suricata-rules/ and zeek-scripts/ live at the top of the repository because zkg
   (zkg.meta: script_dir) and suricata-update use them there. A wheel carries only the
   package, so `build_py` copies them into msewatch/share/ of the build tree; the sdist
   carries them through MANIFEST.in. One source of truth, nothing committed twice.
2. The compiled paths, optional C extensions: msewatch._fastpath (the offline packet path),
   msewatch._decide (deciding a flow and the host model) and msewatch._wire (the bridge's
   flow_evidence decoder and verdict encoder). Without a C compiler or the Python headers the
   build prints one line and installs the pure-Python package, which works the same, only
   slower (msewatch.fastpath.status() and msewatch.compiled.status() say which path runs).
"""

from __future__ import annotations

import os
import shutil
import sys
import zlib

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))

# --- 1. assets ----------------------------------------------------------------------------------

# repository directory -> directory inside the installed package (msewatch/assets.py reads these)
SHIPPED = {
    "suricata-rules": os.path.join("msewatch", "share", "suricata-rules"),
    "zeek-scripts": os.path.join("msewatch", "share", "zeek", "msewatch"),
}


def _shipped_files(src_dir: str):
    for root, dirs, files in os.walk(src_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            if not name.startswith("."):
                path = os.path.join(root, name)
                yield path, os.path.relpath(path, src_dir)


class BuildPyWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the repository's directories directly
        for src, dst in SHIPPED.items():
            src_dir = os.path.join(HERE, src)
            if not os.path.isdir(src_dir):
                raise SystemExit(f"setup.py: {src}/ is missing; cannot build a package without it")
            for path, rel in _shipped_files(src_dir):
                target = os.path.join(self.build_lib, dst, rel)
                self.mkpath(os.path.dirname(target))
                self.copy_file(path, target, preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        for src, dst in SHIPPED.items():
            for _path, rel in _shipped_files(os.path.join(HERE, src)):
                outputs.append(os.path.join(self.build_lib, dst, rel))
        return outputs


# --- 2. the compiled paths ------------------------------------------------------------------

FASTPATH_SOURCE = os.path.join("bridge", "msewatch", "_fastpath.c")
DECIDE_SOURCE = os.path.join("bridge", "msewatch", "_decide.c")
WIRE_SOURCE = os.path.join("bridge", "msewatch", "_wire.c")


class OptionalBuildExt(build_ext):
    """build_ext that falls back to pure Python instead of failing the installation."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler at all, or the toolchain could not be set up
            self._skip(e)

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # compiler or Python.h missing, compile error
            self._skip(e)

    _said = False

    @classmethod
    def _skip(cls, e: Exception) -> None:
        if cls._said:  # one line for all extensions: they fail for the same reason
            return
        cls._said = True
        why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        print(f"msewatch: C packet path not built ({why}); installing the pure-Python path for packets,"
              " deciding and the bridge codec (install gcc and python3-dev for the fast one)", file=sys.stderr)


def _source_crc(source: str = FASTPATH_SOURCE) -> str:
    # compiled in, so a development checkout notices an extension older than its source
    with open(os.path.join(HERE, source), "rb") as f:
        return f"{zlib.crc32(f.read()):08x}"


setup(
    cmdclass={"build_py": BuildPyWithAssets, "build_ext": OptionalBuildExt},
    ext_modules=[
        Extension(
            "msewatch._fastpath",
            sources=[FASTPATH_SOURCE],
            define_macros=[("FASTPATH_SOURCE_HASH", f'"{_source_crc()}"')],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        # 3. the compiled decider (speeddec): score.flow.decide_flow in C. IEEE doubles as
        # Python computes them: no fused multiply-add, no fast-math (verdicts must be equal)
        Extension(
            "msewatch._decide",
            sources=[DECIDE_SOURCE],
            define_macros=[("DECIDE_SOURCE_HASH", f'"{_source_crc(DECIDE_SOURCE)}"')],
            extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        ),
        # 4. the bridge's codec for its two hot messages (speeddec): wire/events.py in C
        Extension(
            "msewatch._wire",
            sources=[WIRE_SOURCE],
            define_macros=[("WIRE_SOURCE_HASH", f'"{_source_crc(WIRE_SOURCE)}"')],
            extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        ),
    ],
)
