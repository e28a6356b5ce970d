"""The long fuzz run: one command, the same targets and oracles as the CI smoke.

    .venv/bin/python -m tests.fuzz [--minutes 10] [--target pcap|evidence|annotate|config|all]
    .venv/bin/python -m tests.fuzz --engine atheris --target pcap --minutes 10   # coverage-guided
    make fuzz                                                                     # = the first, 10 min

Hypothesis (the default) runs batches of examples until the time is up, each batch with fresh
randomness, and keeps failing examples in .hypothesis/ so the next run (and the CI smoke on this
machine) replays them first. atheris (pip install atheris; not a project dependency) drives the
same target functions with libFuzzer's coverage-guided mutation of the seeds' bytes, one target
per run. Exit status: 0 when nothing broke, 1 with the failing input printed (and, for atheris,
written by libFuzzer as crash-*), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

TARGETS = ("pcap", "evidence", "annotate", "config")


def _hypothesis_test(target: str, batch: int, calls: list[int]):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.database import DirectoryBasedExampleDatabase

    from . import strategies as S
    from . import targets as T

    cfg = settings(max_examples=batch, deadline=None, derandomize=False, print_blob=True,
                   database=DirectoryBasedExampleDatabase(str(T.REPO / ".hypothesis" / "fuzz")),
                   suppress_health_check=list(HealthCheck))
    check = {"pcap": T.check_pcap, "evidence": T.check_evidence, "annotate": T.check_annotate,
             "config": T.check_config}[target]

    def one(data) -> None:
        calls[0] += 1
        check(data)

    def two(lines, verdicts) -> None:
        calls[0] += 1
        check(lines, verdicts)

    if target == "pcap":
        return cfg(given(S.pcaps())(one))
    if target == "evidence":
        return cfg(given(S.evidence_messages())(one))
    if target == "annotate":
        return cfg(given(st.lists(S.eve_lines(), max_size=16), S.verdicts())(two))
    return cfg(given(S.configs())(one))


def run_hypothesis(targets: list[str], seconds: float) -> int:
    share = seconds / len(targets)
    for target in targets:
        calls = [0]
        test = _hypothesis_test(target, batch=100 if target == "pcap" else 500, calls=calls)
        end = time.monotonic() + share
        batches = 0
        t0 = time.monotonic()
        while True:
            try:
                test()
            except Exception as e:  # hypothesis has shrunk it and printed the falsifying example
                print(f"fuzz {target}: FAILED after {calls[0]} inputs: {type(e).__name__}: {str(e)[:2000]}",
                      file=sys.stderr)
                return 1
            batches += 1
            if time.monotonic() >= end:
                break
        print(f"fuzz {target}: ok, {calls[0]} inputs in {batches} batch(es), {time.monotonic() - t0:.0f} s",
              flush=True)
    return 0


def run_atheris(target: str, seconds: float) -> int:
    try:
        import atheris
    except ImportError:
        print("the atheris engine needs `pip install atheris` (not a project dependency)", file=sys.stderr)
        return 2
    with atheris.instrument_imports(include=["msewatch"]):
        import msewatch.cli  # noqa: F401
        import msewatch.config  # noqa: F401
        import msewatch.engine  # noqa: F401
        import msewatch.sinks.eve_annotate  # noqa: F401
        import msewatch.sources.pcap  # noqa: F401
        import msewatch.wire.events  # noqa: F401
    from . import targets as T

    seeds = {"pcap": T.pcap_seeds, "evidence": T.evidence_seeds,
             "annotate": lambda: (b'{"event_type":"flow","src_ip":"10.0.0.1","src_port":1,"dest_ip":"10.0.0.2",'
                                  b'"dest_port":2,"proto":"TCP","community_id":"1:abc="}\n',),
             "config": lambda: (__import__("msewatch.config").config.default_config_text().encode(),)}[target]()
    verdict = [{"type": "flow", "ts": 0, "community_id": "1:abc=", "proto": "tcp", "orig_h": "10.0.0.1",
                "orig_p": 1, "resp_h": "10.0.0.2", "resp_p": 2, "label": "p2p_likely"}]

    def one(data: bytes) -> None:
        if target == "pcap":
            T.check_pcap(data)
        elif target == "evidence":
            T.check_evidence(data)
        elif target == "annotate":
            T.check_annotate(data.splitlines(keepends=True), verdict)
        else:
            T.check_config(data)

    corpus = Path(tempfile.mkdtemp(prefix=f"msewatch-fuzz-{target}-"))
    for i, s in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(s)
    print(f"atheris: {target}, {len(seeds)} seeds in {corpus}, {seconds:.0f} s", flush=True)
    atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds)}", "-timeout=30", "-rss_limit_mb=4096",
                   "-max_len=1048576", str(corpus)], one)
    atheris.Fuzz()  # exits the process: 0 when the time is up, 1 on a failure
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="total time (default 10)")
    ap.add_argument("--target", choices=TARGETS + ("all",), default="all")
    ap.add_argument("--engine", choices=("hypothesis", "atheris"), default="hypothesis")
    args = ap.parse_args(argv)
    targets = list(TARGETS) if args.target == "all" else [args.target]
    seconds = args.minutes * 60
    if args.engine == "atheris":
        if len(targets) != 1:
            ap.error("--engine atheris runs one --target at a time")
        return run_atheris(targets[0], seconds)
    return run_hypothesis(targets, seconds)


if __name__ == "__main__":
    sys.exit(main())
