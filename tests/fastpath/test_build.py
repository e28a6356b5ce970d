"""The package builds as a wheel with `pip wheel .`: with a C compiler the wheel carries the
compiled packet path; without one the build still succeeds, says so in one line, and the wheel
is the pure-Python package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The tracked sources a wheel is built from (no build products, no tests)."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    dst = tmp_path_factory.mktemp("src")
    for f in files:
        if f.startswith(("tests/", "benchmarks/", "docs/")):
            continue
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)
    return dst


def wheel(source: Path, out: Path, **env) -> tuple[subprocess.CompletedProcess, list[str]]:
    source = shutil.copytree(source, out.with_name(out.name + "-src"))  # a fresh tree: no build/ reuse
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), "."], cwd=source,
                       capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (whl,) = out.glob("msewatch-*.whl")
    return p, zipfile.ZipFile(whl).namelist()


def test_pip_wheel_builds_the_compiled_packet_path(source, tmp_path):
    _, names = wheel(source, tmp_path / "with")
    for ext in ("_fastpath", "_decide", "_wire"):  # packet path, deciding, the bridge's codec
        assert any(n.startswith(f"msewatch/{ext}") and n.endswith(".so") for n in names), ext
    assert "msewatch/fastpath.py" in names and "msewatch/data/default.yaml" in names


def test_without_a_compiler_the_wheel_is_pure_python_and_one_line_says_so(source, tmp_path):
    p, names = wheel(source, tmp_path / "without", CC="/nonexistent/cc")
    assert not any(n.endswith(".so") for n in names) and "msewatch/fastpath.py" in names
    assert "msewatch/fastdecide.py" in names and "msewatch/compiled.py" in names
    said = [line for line in (p.stdout + p.stderr).splitlines() if "msewatch: C packet path not built" in line]
    assert len(said) == 1 and "pure-Python" in said[0]
