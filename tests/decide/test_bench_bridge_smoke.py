"""A smoke run of the bridge benchmark (issue 12: CI keeps one small run of each benchmark; no
timing is asserted, only that the whole path runs end to end - a real WebSocket peer, the
bridge process, every verdict back - and that it reports its headline numbers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bridge_benchmark_smoke():
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_bridge.py"), "--smoke"], capture_output=True,
                       text=True, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "wire codec: compiled" in out and "deciding: compiled" in out  # CI builds them
    assert "SUMMARY bridge end to end:" in out and "SUMMARY bridge ratio vs orjson floor:" in out
    # the verdicts paired, with the bridge and the peer on all CPUs, and (2 CPUs or more) on CPUs of their own
    assert "SUMMARY bridge latency at 2,000/s, shared: added (frame in -> frame out) p99" in out
    if len(os.sched_getaffinity(0)) >= 2:
        assert "SUMMARY bridge latency at 2,000/s, pinned: added (frame in -> frame out) p99" in out
