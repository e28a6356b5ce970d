#!/usr/bin/env python3
"""CPU cost of the Zeek package: `zeek -r` with the package and a bridge answering, against
plain `zeek -r` with the same (default) scripts otherwise.

    .venv/bin/python benchmarks/bench_zeek.py [--runs 5] [--packets 400000] [--pcap PCAP]
    .venv/bin/python benchmarks/bench_zeek.py --profile     # also where the script time goes
    .venv/bin/python benchmarks/bench_zeek.py --smoke       # one quick run each (CI; no timing)

The capture is the merged corpus repeated with shifted addresses and times until it holds
--packets packets (benchmarks/common.py, cached in benchmarks/out/): real-client P2P captures
and the negatives (TLS, SSH, HTTP, DNS, obfs4, shadowsocks) interleaved.

Three ways, alternating, --runs times each; the number is the CPU time (user + sys, from
wait4) of the zeek process alone, threads included:

  plain      zeek -C -r CAP
  package    zeek -C -r CAP zeek-scripts                       (no bridge: nothing listens)
  bridge     zeek -C -r CAP zeek-scripts zeek-scripts/wait-for-bridge.zeek, with
             `msewatch run` connected and answering every flow (pcap mode); the bridge's own
             CPU is not counted, Zeek's handling of its verdicts is

The headline ratio is median(bridge) / median(plain). --profile adds one run of each
package variant with Zeek's --profile-scripts and prints the script functions and events
that cost the most (self time, instrumented: the profiler's own overhead inflates small
functions).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402

PACKAGE = common.REPO / "zeek-scripts"  # --package measures another copy (A/B)
SMOKE_PCAP = common.CORPUS / "swarm.pcap"


def find_zeek() -> str | None:
    return shutil.which("zeek") or ("/opt/zeek/bin/zeek" if os.access("/opt/zeek/bin/zeek", os.X_OK) else None)


def msewatch() -> list[str]:
    exe = common.VENV_BIN / "msewatch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "msewatch"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_zeek(zeek: str, args: list[str], cwd: Path, timeout: float = 1800) -> tuple[float, float]:
    """(CPU seconds of the zeek process, wall seconds); raises on failure."""
    t0 = time.perf_counter()
    p = subprocess.Popen([zeek, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            raise RuntimeError(f"zeek {' '.join(args)} did not finish within {timeout:.0f}s")
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.stderr:
        p.stderr.close()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise RuntimeError(f"zeek {' '.join(args)} exited {rc}: {err.strip()[-1000:]}")
    return ru.ru_utime + ru.ru_stime, wall


def count_lines(log: Path, column: str, values: tuple[str, ...]) -> int:
    if not log.exists():
        return 0
    names: list[str] = []
    n = 0
    for line in log.read_text().splitlines():
        if line.startswith("#fields"):
            names = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            row = dict(zip(names, line.split("\t")))
            n += row.get(column) in values
    return n


def count_unlabelled_tcp_udp(log: Path) -> int:
    if not log.exists():
        return 0
    names: list[str] = []
    n = 0
    for line in log.read_text().splitlines():
        if line.startswith("#fields"):
            names = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            row = dict(zip(names, line.split("\t")))
            n += row.get("proto") in ("tcp", "udp") and row.get("msewatch", "-") == "-"
    return n


def run_variant(kind: str, zeek: str, pcap: Path, work: Path, extra: list[str] | None = None) -> tuple[float, float, str]:
    """One run; returns (cpu, wall, note)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    extra = extra or []
    if kind == "plain":
        cpu, wall = run_zeek(zeek, ["-C", "-r", str(pcap), *extra], work)
        return cpu, wall, ""
    if kind == "package":
        # listen=F: older copies of the package listened (and never exited) after a pcap too
        cpu, wall = run_zeek(zeek, ["-C", "-r", str(pcap), str(PACKAGE), "MSEWatch::listen=F", *extra], work)
        return cpu, wall, ""
    port = free_port()
    (work / "bridge.yaml").write_text(
        "zeek:\n"
        f"  endpoints: [\"ws://127.0.0.1:{port}/v1/messages/json\"]\n"
        "  reconnect: {initial: 0.1, max: 0.5}\n"
        "metrics: {enabled: false}\n")
    with open(work / "bridge.log", "w") as blog:
        bridge = subprocess.Popen(msewatch() + ["run", "-c", "bridge.yaml"], cwd=work, stdout=blog,
                                  stderr=subprocess.STDOUT)
    try:
        cpu, wall = run_zeek(zeek, ["-C", "-r", str(pcap), str(PACKAGE), str(PACKAGE / "wait-for-bridge.zeek"),
                                    f"MSEWatch::listen_port={port}/tcp", *extra], work)
    finally:
        bridge.send_signal(signal.SIGTERM)
        try:
            bridge.wait(30)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait()
    conns = count_lines(work / "conn.log", "proto", ("tcp", "udp"))
    flows = count_lines(work / "msewatch.log", "kind", ("flow",))
    labelled = conns - count_unlabelled_tcp_udp(work / "conn.log")
    return cpu, wall, f"{flows} flow verdicts for {conns} TCP/UDP connections, {labelled} labelled in conn.log"


def profile(zeek: str, pcap: Path, work: Path, top: int) -> None:
    """Script self time per function/event, package runs minus the plain run."""
    tables = {}
    for kind in ("plain", "bridge"):
        out = work / f"prof-{kind}.log"
        run_variant(kind, zeek, pcap, work / f"prof-{kind}", [f"--profile-scripts={out}"])
        rows = {}
        for line in out.read_text().splitlines():
            f = line.split("\t")
            if line.startswith("#") or len(f) < 6 or f[2] == "TOTAL":
                continue
            try:
                rows[(f[0], f[1].rsplit("/", 2)[-1])] = (int(f[3]), float(f[4]) - float(f[5]))
            except ValueError:
                continue
        tables[kind] = rows
    base = tables["plain"]
    diff = []
    for k, (n, self_cpu) in tables["bridge"].items():
        bn, bself = base.get(k, (0, 0.0))
        diff.append((self_cpu - bself, n - bn, k))
    diff.sort(reverse=True)
    print(f"\nscript profile (--profile-scripts), bridge run minus plain run, top {top} by self time:")
    print(f"  {'self s':>7} {'calls':>9}  function / event")
    for d, n, (name, where) in diff[:top]:
        print(f"  {d:7.3f} {n:9d}  {name}  ({where})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="alternating runs of each way (default 5)")
    ap.add_argument("--packets", type=int, default=400_000, help="packets in the benchmark capture (default 400000)")
    ap.add_argument("--pcap", type=Path, help="use this capture instead of the merged corpus")
    ap.add_argument("--profile", action="store_true", help="also print where the script time goes")
    ap.add_argument("--top", type=int, default=25, help="profile rows to print (default 25)")
    ap.add_argument("--smoke", action="store_true", help="one run each on a small corpus capture (CI)")
    ap.add_argument("--package", type=Path, help="measure this copy of zeek-scripts/ instead (A/B)")
    args = ap.parse_args(argv)
    if args.package:
        global PACKAGE
        PACKAGE = args.package.resolve()

    zeek = find_zeek()
    if zeek is None:
        print("bench_zeek: no zeek on PATH or at /opt/zeek/bin/zeek; skipped")
        return 0
    version = subprocess.run([zeek, "--version"], capture_output=True, text=True).stdout.strip()
    if args.smoke:
        pcap, runs = args.pcap or SMOKE_PCAP, 1
    else:
        pcap, runs = args.pcap or common.build_bench_capture(args.packets), args.runs
    n, nbytes, dur = common.capture_stats(pcap)
    print(common.machine_line())
    print(f"{version}; capture {pcap.name}: {n} packets, {nbytes / 1e6:.0f} MB, {dur:.1f} s of traffic")

    kinds = ("plain", "package", "bridge")
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    wall: dict[str, list[float]] = {k: [] for k in kinds}
    notes = ""
    with tempfile.TemporaryDirectory(prefix="bench-zeek-") as tmp:
        for r in range(runs):
            for k in kinds:
                c, w, note = run_variant(k, zeek, pcap, Path(tmp) / k)
                cpu[k].append(c)
                wall[k].append(w)
                notes = note or notes
            print(f"  run {r + 1}/{runs}: " + ", ".join(f"{k} {cpu[k][-1]:.2f}s" for k in kinds), flush=True)
        if args.profile:
            profile(zeek, pcap, Path(tmp), args.top)

    base = common.median(cpu["plain"])
    print(f"\n{'way':8s} {'CPU median':>10} {'min':>6} {'max':>6} {'wall median':>11} {'ratio':>6}")
    for k in kinds:
        m = common.median(cpu[k])
        print(f"{k:8s} {m:9.2f}s {min(cpu[k]):5.2f}s {max(cpu[k]):5.2f}s {common.median(wall[k]):10.2f}s "
              f"{m / base:6.2f}")
    print(f"bridge run: {notes}")
    if not args.smoke:
        common.summary("zeek CPU with the package and a bridge answering / plain zeek",
                       f"{common.median(cpu['bridge']) / base:.2f} (target <= 1.10)")
        common.summary("zeek CPU with the package, no bridge / plain zeek",
                       f"{common.median(cpu['package']) / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
