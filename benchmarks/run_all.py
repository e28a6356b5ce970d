"""Run every benchmarks/bench_*.py (each a standalone script printing its own results), one after
the other, then print a combined summary. `make bench` calls this.

    .venv/bin/python benchmarks/run_all.py [-k NAME ...] [--list]

The summary lists, per script, its exit status and run time and the lines it marked as headline
numbers (lines starting with ``SUMMARY``, see benchmarks/common.py); for a script that marks none,
its lines that mention a ratio. The whole output is also written to benchmarks/out/last_run.txt.
Exit status: 0 when every script succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402

_RATIO = re.compile(r"ratio|\d+(\.\d+)?x\b", re.IGNORECASE)


def scripts(only: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if only:
        found = [p for p in found if any(k in p.stem for k in only)]
    return found


def run(script: Path, log) -> tuple[int, float, list[str]]:
    """Run one script, streaming its output; return (exit status, seconds, output lines)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-u", str(script)], cwd=common.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write("  " + line)
        log.write(line)
        lines.append(line.rstrip("\n"))
    rc = proc.wait()
    return rc, time.perf_counter() - t0, lines


def headline(lines: list[str]) -> list[str]:
    marked = [ln[len("SUMMARY "):] for ln in lines if ln.startswith("SUMMARY ")]
    if marked:
        return marked
    return [ln.strip() for ln in lines if _RATIO.search(ln)][-6:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", action="append", default=[], help="only scripts whose name contains this")
    ap.add_argument("--list", action="store_true", help="list the scripts and exit")
    args = ap.parse_args(argv)

    todo = scripts(args.k)
    if args.list or not todo:
        for p in todo:
            print(p.name)
        return 0 if todo else 1
    common.OUT.mkdir(parents=True, exist_ok=True)
    results = []
    with open(common.OUT / "last_run.txt", "w") as log:
        head = common.machine_line()
        print(head)
        log.write(head + "\n")
        for p in todo:
            print(f"\n=== {p.name}", flush=True)
            log.write(f"\n=== {p.name}\n")
            rc, secs, lines = run(p, log)
            results.append((p.name, rc, secs, headline(lines)))
        out = ["", "=" * 78, "benchmark summary", "=" * 78]
        for name, rc, secs, heads in results:
            status = "ok" if rc == 0 else f"FAILED (exit {rc})"
            out.append(f"{name}  [{status}, {secs:.0f}s]")
            out.extend(f"    {h}" for h in heads)
        print("\n".join(out))
        log.write("\n".join(out) + "\n")
    return 0 if all(rc == 0 for _, rc, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
