#!/usr/bin/env python3
"""The verdicts of the committed corpus, as digests: what "verdicts identical" is checked against.

    .venv/bin/python tools/verdict_digests.py --check         # compare with tests/data/verdict_digests.json
    .venv/bin/python tools/verdict_digests.py --write         # record the current code's verdicts
    .venv/bin/python tools/verdict_digests.py --dump DIR      # every run's verdict JSON lines, for a diff
    .venv/bin/python tools/verdict_digests.py --bridge PATH   # the same for another copy of the package

Runs (each one engine with the default config, verdicts as `msewatch analyze` writes them):
  pcap:NAME         every corpus capture on its own
  corpus            the whole corpus in one engine (hosts and the peer cache carry over)
  VARIANT:NAME      every corpus capture rewritten with each capture artifact of
                    msewatch.perturb.VARIANTS (snaplen, one side, start unseen, loss, ...)
  bench             the benchmark capture (benchmarks/common.py: the corpus x15, 7k flows)
  wire              the corpus's evidence sent through the Zeek wire codec (encode, then the
                    bridge's decoder) into Engine.process_evidence, as the live bridge decides
The digest of a run is the SHA-256 of its verdict lines. `--pure` forces the pure-Python packet
path and deciding (MSEWATCH_PURE_PYTHON=1); without it the compiled ones are used when built.
A label rule that changes on purpose changes digests: record them again with --write and say so
in the commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "data" / "corpus"
DIGESTS = REPO / "tests" / "data" / "verdict_digests.json"
VERSION = 1


def _lines(verdicts) -> list[bytes]:
    import orjson

    return [orjson.dumps(v.to_dict()) for v in verdicts]


def _pcap_run(paths: list[Path]) -> list[bytes]:
    from msewatch.engine import Engine, run_pcaps

    return _lines(run_pcaps([str(p) for p in paths], Engine()))


def _wire_run(paths: list[Path]) -> list[bytes]:
    """The corpus's evidence, encoded as Zeek sends it and decoded as the bridge does."""
    from msewatch.engine import Engine, extract_evidence
    from msewatch.wire import events, v1

    eng = Engine()
    out = []
    for ev in extract_evidence([str(p) for p in paths]):
        raw = v1.encode_event_message("zeek/msewatch/evidence", events.evidence_to_event(ev))
        got = events.decode_evidence_message(raw)
        out.extend(eng.process_evidence(got))
        eng.drain()  # the bridge reads what process_evidence returns, nothing is queued for it
    out.extend(eng.flush())
    return _lines(out)


def runs(corpus: Path = CORPUS, variants: bool = True, bench: bool = True, workdir: Path | None = None):
    """(name, verdict lines) of every run, in a fixed order."""
    pcaps = sorted(corpus.glob("*.pcap"))
    if not pcaps:
        raise SystemExit(f"no corpus captures in {corpus}")
    for p in pcaps:
        yield f"pcap:{p.name}", _pcap_run([p])
    yield "corpus", _pcap_run(pcaps)
    yield "wire", _wire_run(pcaps)
    if variants:
        from msewatch.perturb import VARIANTS, perturb_pcap

        with tempfile.TemporaryDirectory(prefix="msewatch-digests-", dir=workdir) as tmp:
            for name, spec in VARIANTS.items():
                for p in pcaps:
                    dst = Path(tmp) / f"{name}-{p.name}"
                    perturb_pcap(p, dst, spec)
                    yield f"{name}:{p.name}", _pcap_run([dst])
                    dst.unlink()
    if bench:
        sys.path.insert(0, str(REPO / "benchmarks"))
        import common

        with tempfile.TemporaryDirectory(prefix="msewatch-bench-", dir=workdir) as tmp:
            capture = common.build_bench_capture(400_000, out=Path(tmp))
            yield "bench", _pcap_run([capture])


def digest(lines: list[bytes]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line)
        h.update(b"\n")
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--check", action="store_true", help=f"compare with {DIGESTS.relative_to(REPO)}")
    what.add_argument("--write", action="store_true", help=f"write {DIGESTS.relative_to(REPO)}")
    what.add_argument("--dump", metavar="DIR", help="write every run's verdict lines into DIR")
    ap.add_argument("--bridge", metavar="PATH", help="the package directory to import (default: bridge/)")
    ap.add_argument("--pure", action="store_true", help="pure-Python packet path and deciding")
    ap.add_argument("--no-variants", action="store_true", help="skip the capture-artifact variants")
    ap.add_argument("--no-bench", action="store_true", help="skip the benchmark capture")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(args.bridge).resolve() if args.bridge else REPO / "bridge"))
    if args.pure:
        os.environ["MSEWATCH_PURE_PYTHON"] = "1"
    want = json.loads(DIGESTS.read_text())["runs"] if args.check else {}
    got: dict[str, dict] = {}
    bad = 0
    for name, lines in runs(variants=not args.no_variants, bench=not args.no_bench):
        got[name] = {"verdicts": len(lines), "sha256": digest(lines)}
        if args.dump:
            d = Path(args.dump)
            d.mkdir(parents=True, exist_ok=True)
            (d / (name.replace(":", "__") + ".jsonl")).write_bytes(b"".join(x + b"\n" for x in lines))
        if args.check:
            if want.get(name) != got[name]:
                bad += 1
                print(f"DIFFERS {name}: {got[name]} (recorded: {want.get(name)})")
    if args.write:
        DIGESTS.write_text(json.dumps({"version": VERSION, "runs": got}, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(got)} run digests to {DIGESTS}")
    if args.check:
        missing = sorted(set(want) - set(got))
        skipped = args.no_variants or args.no_bench
        if missing and not skipped:
            bad += len(missing)
            print(f"missing runs: {missing}")
        print(f"{len(got) - bad if bad <= len(got) else 0} of {len(got)} runs identical" + ("" if not bad else f"; {bad} differ"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
