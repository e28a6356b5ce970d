"""EVE annotation throughput: msewatch's byte-preserving annotate vs jq, same eve.json, same run.

    python benchmarks/bench_annotate.py [--lines N] [--pcap CAP ...]

Builds an eve.json by running the real Suricata (our rules, community-id on, all default event
types) over the corpus pcaps, repeats it to N lines, and gives every flow with a community_id a
verdict for one in three of them. Then times

  msewatch: annotate(read_lines(eve), lookup, /dev/null)   (every line parsed, joined, written)
  jq:       jq -c '. + {msewatch: {label: "x"}}' eve.json > /dev/null   (adds a constant to all)

and prints lines/s for both and the ratio. jq re-serialises every line and joins nothing, so it
is the floor for "parse JSON lines and add a key" with a common tool.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bridge"))
sys.path.insert(0, str(REPO / "tests" / "suricata"))

import orjson  # noqa: E402

from msewatch.sinks.eve_annotate import VerdictLookup, annotate  # noqa: E402
from msewatch.sources.eve import read_lines  # noqa: E402


def make_eve(pcaps: list[Path], work: Path, n_lines: int) -> Path:
    from suri import run_pcap

    base: list[bytes] = []
    for i, p in enumerate(pcaps):
        d = work / f"run{i}"
        run_pcap(p, d)
        base += (d / "eve.json").read_bytes().splitlines(keepends=True)
    if not base:
        raise SystemExit("suricata produced no EVE lines")
    eve = work / "eve.json"
    with open(eve, "wb") as f:
        written = 0
        while written < n_lines:
            chunk = base[: n_lines - written]
            f.write(b"".join(chunk))
            written += len(chunk)
    return eve


def verdicts_for(eve: Path) -> list[dict]:
    cids = []
    seen = set()
    for line in read_lines(eve):
        e = orjson.loads(line)
        c = e.get("community_id")
        if c and c not in seen:
            seen.add(c)
            cids.append(c)
    return [{"type": "flow", "ts": 0.0, "community_id": c, "label": "p2p_likely", "protocol": "bt_mse",
             "probability": 0.97, "reasons": ["mse_handshake=1.00", "popcount=3.93"], "host_score": 1.2}
            for c in cids[::3]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--pcap", action="append", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs each")
    args = ap.parse_args()
    jq = shutil.which("jq")
    if jq is None:
        raise SystemExit("jq not found (apt-get install jq)")
    if shutil.which("suricata") is None:
        raise SystemExit("suricata not found")
    pcaps = args.pcap or sorted((REPO / "tests" / "data" / "corpus").glob("*.pcap"))
    if not pcaps:
        raise SystemExit("no pcaps: pass --pcap or generate tests/data/corpus")
    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as tmp:
        work = Path(tmp)
        eve = make_eve(pcaps, work, args.lines)
        n = sum(1 for _ in read_lines(eve))
        size = eve.stat().st_size
        lookup = VerdictLookup(verdicts_for(eve))

        best_ours = float("inf")
        annotated = 0
        for _ in range(args.repeat):
            with open("/dev/null", "wb") as out:
                t = time.perf_counter()
                st = annotate(read_lines(eve), lookup, out)
                best_ours = min(best_ours, time.perf_counter() - t)
            annotated = st.annotated
        best_jq = float("inf")
        for _ in range(args.repeat):
            with open("/dev/null", "wb") as out:
                t = time.perf_counter()
                subprocess.run([jq, "-c", '. + {msewatch: {label: "x"}}', str(eve)], stdout=out, check=True)
                best_jq = min(best_jq, time.perf_counter() - t)
    ours, theirs = n / best_ours, n / best_jq
    print(f"eve.json: {n} lines, {size / 1e6:.1f} MB, {annotated} annotated (verdicts {len(lookup)}), "
          f"from {len(pcaps)} pcaps")
    print(f"msewatch annotate : {ours:12,.0f} lines/s  ({best_ours:.3f} s)")
    print(f"jq . + {{msewatch}} : {theirs:12,.0f} lines/s  ({best_jq:.3f} s)")
    print(f"ratio msewatch/jq : {ours / theirs:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
