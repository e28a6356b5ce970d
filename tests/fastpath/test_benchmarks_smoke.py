"""Smoke runs of the throughput and memory benchmarks (issue 12: CI keeps one small run of each;
no timing is asserted, only that they run end to end and report their headline numbers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> str:
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True,
                       cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_throughput_benchmark_smoke(compiled):
    out = run("bench_throughput.py", "--smoke")
    assert "packet path: compiled" in out
    assert "SUMMARY throughput msewatch:" in out and "SUMMARY CPU breakdown:" in out
    assert "msewatch -j2" in out and "msewatch pure-Python" in out


def test_memory_benchmark_smoke(compiled):
    out = run("bench_memory.py", "--smoke")
    assert "SUMMARY memory bytes per tracked flow (python)" in out
    assert "SUMMARY memory bytes per tracked flow (c)" in out
