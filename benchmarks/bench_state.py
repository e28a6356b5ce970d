"""What saving and restoring the engine's host state costs (msewatch/state.py, `state.path`).

    .venv/bin/python benchmarks/bench_state.py [--hosts N] [--peers P]

N local hosts (default 10,000), each seen in 5 flows to random remote peers on high ports (one
P2P, one peer-like, three others: every window has a bucket), and P peer-cache endpoints. Times,
in a fresh engine per model (the compiled host model, then MSEWATCH_PURE_PYTHON's):

  snapshot   the copy taken in the event loop between two messages (the only part that blocks it)
  encode     the JSON the file holds (in a thread in the bridge)
  import     a new engine restoring it (at start)

and the file's size. The bridge adds nothing per message; these run every `state.interval`
seconds (default 30) and at start and stop.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(hosts: int, peers: int) -> str:
    from msewatch import state
    from msewatch.engine import Engine

    eng = Engine()
    rng = random.Random(1)
    t0 = 1.0e9
    for i in range(hosts):
        h = f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"
        for j in range(5):
            eng.hosts.observe_flow(h, t0 + i * 0.01 + j, f"1.2.{rng.randrange(256)}.{rng.randrange(256)}",
                                   rng.randrange(1024, 65535), "bt_mse" if j == 0 else None, j == 0, j == 1)
    for i in range(peers):
        eng._peer_cache[(f"1.1.{i // 256 % 256}.{i % 256}", 6881 + i % 50000)] = t0 + i
    a = time.perf_counter()
    snap = state.snapshot(eng)
    b = time.perf_counter()
    data = state.encode(snap)
    c = time.perf_counter()
    n = state.import_state(Engine(), data)
    d = time.perf_counter()
    assert n == hosts
    return (f"{state.model_kind(eng):8}  snapshot {1000 * (b - a):7.1f} ms  encode {1000 * (c - b):7.1f} ms  "
            f"import {1000 * (d - c):7.1f} ms  file {len(data) / 1e6:6.2f} MB  ({hosts} hosts, {len(eng._peer_cache)} peers)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--peers", type=int, default=20_000)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(one(a.hosts, a.peers))
        return 0
    for pure in (False, True):
        env = dict(os.environ, PYTHONPATH=str(REPO / "bridge"))
        env.pop("MSEWATCH_PURE_PYTHON", None)
        if pure:
            env["MSEWATCH_PURE_PYTHON"] = "1"
        r = subprocess.run([sys.executable, __file__, "--child", "--hosts", str(a.hosts), "--peers", str(a.peers)],
                           env=env, capture_output=True, text=True)
        print(r.stdout.strip() or r.stderr.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
