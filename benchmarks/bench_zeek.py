#!/usr/bin/env python3
"""CPU cost of the Zeek package: `zeek -r` with the package, without a bridge and with a bridge
answering, against plain `zeek -r` with the same (default) scripts otherwise.

    .venv/bin/python benchmarks/bench_zeek.py [--runs 5] [--packets 400000] [--pcap PCAP]
    .venv/bin/python benchmarks/bench_zeek.py --profile     # also where the script time goes
    .venv/bin/python benchmarks/bench_zeek.py --perf        # also where the CPU goes (perf)
    .venv/bin/python benchmarks/bench_zeek.py --smoke       # one quick run each (CI; no timing)

The capture is the merged corpus repeated with shifted addresses and times until it holds
--packets packets (benchmarks/common.py, cached in benchmarks/out/): real-client P2P captures
and the negatives (TLS, SSH, HTTP, DNS, obfs4, shadowsocks) interleaved.

The ways, alternating, --runs times each; the number is the CPU time (user + sys, from
wait4) of the zeek process alone, threads included:

  plain           zeek -C -r CAP                                (no plugin loaded)
  script          zeek -C -r CAP zeek-scripts                   script recording, no bridge
  native          the same with the native recorder (ZEEK_PLUGIN_PATH=build, `make plugin`)
  script+bridge   zeek -C -r CAP zeek-scripts zeek-scripts/wait-for-bridge.zeek, with
  native+bridge   `msewatch run` connected and answering every flow (pcap mode); the
                  bridge's own CPU is not counted, Zeek's handling of its verdicts is

The native ways run when build/ holds the plugin (`make plugin`). The two headline ratios are
those of the package as it installs (native when the plugin is built, else script): without a
bridge, and with the bridge answering, each median / median(plain). --profile adds one run of
the bridge way with Zeek's --profile-scripts (script functions and events by self time, minus
the plain run's); --perf one `perf record` of the bridge way and of plain, with the CPU split
by what it was spent on (docs/zeek.md, "Overhead").
"""

from __future__ import annotations

import argparse
import collections
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

sys.path.insert(0, str(common.REPO / "tools"))
from zeek_parity import read_zeek_log as read_log  # noqa: E402  (one reader of Zeek's ASCII logs)

PACKAGE = common.REPO / "zeek-scripts"  # --package measures another copy (A/B)
PLUGIN = common.REPO / "build"  # --plugin another build of the native recorder
SMOKE_PCAP = common.CORPUS / "swarm.pcap"
KINDS = ("plain", "script", "native", "script+bridge", "native+bridge")
FULL_VERDICTS = "p2p_likely"  # --full-verdicts: the bridge's zeek.full_verdicts


def find_zeek() -> str | None:
    return shutil.which("zeek") or ("/opt/zeek/bin/zeek" if os.access("/opt/zeek/bin/zeek", os.X_OK) else None)


def msewatch() -> list[str]:
    exe = common.VENV_BIN / "msewatch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "msewatch"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plugin_built() -> bool:
    return (PLUGIN / "__zeek_plugin__").exists() and any((PLUGIN / "lib").glob("*.so"))


def zeek_env(native: bool) -> dict[str, str]:
    """The environment of a zeek run: the native recorder on the plugin path, or no plugin."""
    env = dict(os.environ)
    env["ZEEK_PLUGIN_PATH"] = str(PLUGIN) if native else ""
    return env


def installed_plugin(zeek: str) -> bool:
    """Whether Zeek loads the native recorder without being told (installed by zkg): then
    the script ways would record natively too."""
    out = subprocess.run([zeek, "-N"], capture_output=True, text=True, env=zeek_env(False)).stdout
    return "MSEWatch::Evidence" in out


def run_zeek(zeek: str, args: list[str], cwd: Path, env: dict[str, str], prefix: list[str] | None = None,
             timeout: float = 1800) -> tuple[float, float]:
    """(CPU seconds of the zeek process, wall seconds); raises on failure."""
    t0 = time.perf_counter()
    errfile = open(cwd / "zeek.stderr", "w+b")  # a file, not a pipe nobody reads while zeek runs
    p = subprocess.Popen([*(prefix or []), zeek, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                         stderr=errfile)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            errfile.close()
            raise RuntimeError(f"zeek {' '.join(args)} did not finish within {timeout:.0f}s")
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    errfile.seek(0)
    err = errfile.read().decode(errors="replace")
    errfile.close()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise RuntimeError(f"zeek {' '.join(args)} exited {rc}: {err.strip()[-1000:]}")
    return ru.ru_utime + ru.ru_stime, wall


def run_variant(kind: str, zeek: str, pcap: Path, work: Path, extra: list[str] | None = None,
                prefix: list[str] | None = None) -> tuple[float, float, str]:
    """One run; returns (cpu, wall, note)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    extra = extra or []
    env = zeek_env(kind.startswith("native"))
    if kind == "plain":
        cpu, wall = run_zeek(zeek, ["-C", "-r", str(pcap), *extra], work, env, prefix)
        return cpu, wall, ""
    if not kind.endswith("+bridge"):
        # listen=F: older copies of the package listened (and never exited) after a pcap too
        cpu, wall = run_zeek(zeek, ["-C", "-r", str(pcap), str(PACKAGE), "MSEWatch::listen=F", *extra], work, env,
                             prefix)
        return cpu, wall, ""
    port = free_port()
    (work / "bridge.yaml").write_text(
        "zeek:\n"
        f"  endpoints: [\"ws://127.0.0.1:{port}/v1/messages/json\"]\n"
        "  reconnect: {initial: 0.1, max: 0.5}\n"
        f"  full_verdicts: {FULL_VERDICTS if FULL_VERDICTS in ('all', '[]') else [FULL_VERDICTS]}\n"
        "metrics: {enabled: false}\n")
    with open(work / "bridge.log", "w") as blog:
        bridge = subprocess.Popen(msewatch() + ["run", "-c", "bridge.yaml"], cwd=work, stdout=blog,
                                  stderr=subprocess.STDOUT)
    try:
        cpu, wall = run_zeek(zeek, ["-C", "-r", str(pcap), str(PACKAGE), str(PACKAGE / "wait-for-bridge.zeek"),
                                    f"MSEWatch::listen_port={port}/tcp", *extra], work, env, prefix)
    finally:
        bridge.send_signal(signal.SIGTERM)
        try:
            bridge.wait(30)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait()
    conns = [r for r in read_log(work / "conn.log") if r.get("proto") in ("tcp", "udp")]
    flows = sum(r.get("kind") == "flow" for r in read_log(work / "msewatch.log"))
    labelled = sum(r.get("msewatch", "-") != "-" for r in conns)
    return cpu, wall, f"{flows} flow verdicts for {len(conns)} TCP/UDP connections, {labelled} labelled in conn.log"


def profile(zeek: str, pcap: Path, work: Path, top: int, bridge_kind: str) -> None:
    """Script self time per function/event, the bridge way minus the plain run."""
    tables = {}
    for kind in ("plain", bridge_kind):
        out = work / f"prof-{kind}.log"
        run_variant(kind, zeek, pcap, work / f"prof-{kind.replace('+', '-')}", [f"--profile-scripts={out}"])
        rows = {}
        for line in out.read_text().splitlines():
            f = line.split("\t")
            if line.startswith("#") or len(f) < 6 or f[2] == "TOTAL" or "-locations" in f[1]:
                continue
            try:
                rows[(f[0], f[1].rsplit("/", 2)[-1])] = (int(f[3]), float(f[4]) - float(f[5]))
            except ValueError:
                continue
        tables[kind] = rows
    base = tables["plain"]
    diff = []
    for k, (n, self_cpu) in tables[bridge_kind].items():
        bn, bself = base.get(k, (0, 0.0))
        diff.append((self_cpu - bself, n - bn, k))
    diff.sort(reverse=True)
    print(f"\nscript profile (--profile-scripts), {bridge_kind} minus plain, top {top} by self time "
          "(instrumented: the profiler's own cost inflates small functions):")
    print(f"  {'self s':>7} {'calls':>9}  function / event")
    for d, n, (name, where) in diff[:top]:
        print(f"  {d:7.3f} {n:9d}  {name}  ({where})")


# --perf: what the CPU of the zeek process was spent on, from sampled call stacks. The first
# rule a sample matches decides (thread name, then frames from the leaf up).
PERF_THREADS = (
    ("Srv:ws", "WebSocket I/O threads (ixwebsocket)"),
    ("zk/ws-reply", "WebSocket I/O threads (ixwebsocket)"),
    ("caf.", "Broker threads (CAF)"),
    ("/Log::", "log writer threads"),
)
PERF_FRAMES = (
    ("WebSocketShim::Process", "evidence to the WebSocket client (Broker -> Zeek -> Broker -> JSON)"),
    ("OnLoopProcess<zeek::cluster::websocket", "verdicts from the WebSocket client (JSON -> Broker)"),
    ("Cluster::publish_bif", "Cluster::publish of evidence (Zeek -> Broker)"),
    ("Broker::Manager::ProcessMessages", "verdict events from Broker (Broker -> Zeek)"),
    ("MSEWatch_Evidence::Recorder", "native recorder"),
    ("Log::__write_bif", "Log::write (all logs)"),
    ("EventMgr::Drain", "script event handlers (all scripts)"),
    ("dispatch_packet", "packet analysis"),
    ("zeek::detail::setup", "start-up (parsing scripts)"),
    ("terminate_zeek", "shut-down"),
)


def perf_split(data: Path) -> collections.Counter:
    text = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,tid,period,ip,sym"], capture_output=True,
                          text=True).stdout
    split: collections.Counter = collections.Counter()
    comm, period, frames = "", 0, []

    def flush() -> None:
        if not comm:
            return
        for pat, name in PERF_THREADS:
            if pat in comm:
                split[name] += period
                return
        for pat, name in PERF_FRAMES:
            if any(pat in f for f in frames):
                split[name] += period
                return
        split["other (main thread)"] += period

    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            flush()
            parts = line.split()
            comm, frames = parts[0], []
            period = next((int(p) for p in parts[2:] if p.isdigit()), 1)
        else:
            frames.append(line.strip())
    flush()
    return split


def perf_profile(zeek: str, pcap: Path, work: Path, bridge_kind: str) -> None:
    if not shutil.which("perf"):
        print("\n--perf: perf not found; skipped")
        return
    splits = {}
    for kind in ("plain", bridge_kind):
        data = work / f"perf-{kind.replace('+', '-')}.data"
        prefix = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "--call-graph", "dwarf,16384", "-o", str(data),
                  "--"]
        try:
            run_variant(kind, zeek, pcap, work / f"perf-{kind.replace('+', '-')}", prefix=prefix)
        except RuntimeError as e:
            print(f"\n--perf: perf record failed ({e}); skipped")
            return
        splits[kind] = perf_split(data)
    base, other = splits["plain"], splits[bridge_kind]
    total0, total1 = sum(base.values()) / 1e9, sum(other.values()) / 1e9
    print(f"\nwhere the CPU goes (perf record, cpu-clock samples with call stacks; one run each): "
          f"plain {total0:.2f} s, {bridge_kind} {total1:.2f} s")
    print(f"  {'plain s':>8} {bridge_kind + ' s':>20} {'more s':>8}  spent on")
    for name in sorted(set(base) | set(other), key=lambda n: -(other[n] - base[n])):
        print(f"  {base[name] / 1e9:8.2f} {other[name] / 1e9:20.2f} {(other[name] - base[name]) / 1e9:+8.2f}  {name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="alternating runs of each way (default 5)")
    ap.add_argument("--packets", type=int, default=400_000, help="packets in the benchmark capture (default 400000)")
    ap.add_argument("--pcap", type=Path, help="use this capture instead of the merged corpus")
    ap.add_argument("--ways", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--profile", action="store_true", help="also print where the script time goes")
    ap.add_argument("--perf", action="store_true", help="also print where the CPU goes (perf record)")
    ap.add_argument("--top", type=int, default=25, help="profile rows to print (default 25)")
    ap.add_argument("--smoke", action="store_true", help="one run each on a small corpus capture (CI)")
    ap.add_argument("--package", type=Path, help="measure this copy of zeek-scripts/ instead (A/B)")
    ap.add_argument("--plugin", type=Path, help="use this build of the native recorder (default build/)")
    ap.add_argument("--full-verdicts", choices=("p2p_likely", "all", "none"), default="p2p_likely",
                    help="the bridge's zeek.full_verdicts: p2p_likely (default; the other flows get compact "
                         "conn.log labels), all (every verdict in full), none (every flow a compact label)")
    args = ap.parse_args(argv)
    global PACKAGE, PLUGIN, FULL_VERDICTS
    FULL_VERDICTS = "[]" if args.full_verdicts == "none" else args.full_verdicts
    if args.package:
        PACKAGE = args.package.resolve()
    if args.plugin:
        PLUGIN = args.plugin.resolve()

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

    kinds = [k.strip() for k in args.ways.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        ap.error(f"unknown way(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    if "plain" not in kinds:
        kinds.insert(0, "plain")
    if not plugin_built():
        if any(k.startswith("native") for k in kinds):
            print(f"native recorder not built ({PLUGIN}; `make plugin`): native ways skipped")
        kinds = [k for k in kinds if not k.startswith("native")]
    elif installed_plugin(zeek):
        print("the native recorder is installed in Zeek's plugin directory: the script ways would record "
              "natively too; skipped")
        kinds = [k for k in kinds if not k.startswith("script")]
    print("ways: " + ", ".join(kinds))

    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    wall: dict[str, list[float]] = {k: [] for k in kinds}
    notes: dict[str, str] = {}
    as_installed = "native" if "native" in kinds or "native+bridge" in kinds else "script"
    with tempfile.TemporaryDirectory(prefix="bench-zeek-") as tmp:
        for r in range(runs):
            for k in kinds:
                c, w, note = run_variant(k, zeek, pcap, Path(tmp) / k.replace("+", "-"))
                cpu[k].append(c)
                wall[k].append(w)
                if note:
                    notes[k] = note
            print(f"  run {r + 1}/{runs}: " + ", ".join(f"{k} {cpu[k][-1]:.2f}s" for k in kinds), flush=True)
        bridge_kind = f"{as_installed}+bridge"
        if args.profile and bridge_kind in kinds:
            profile(zeek, pcap, Path(tmp), args.top, bridge_kind)
        if args.perf and bridge_kind in kinds:
            perf_profile(zeek, pcap, Path(tmp), bridge_kind)

    base = common.median(cpu["plain"])
    print(f"\n{'way':14s} {'CPU median':>10} {'min':>6} {'max':>6} {'wall median':>11} {'ratio':>6}")
    for k in kinds:
        m = common.median(cpu[k])
        print(f"{k:14s} {m:9.2f}s {min(cpu[k]):5.2f}s {max(cpu[k]):5.2f}s {common.median(wall[k]):10.2f}s "
              f"{m / base:6.2f}")
    for k, note in notes.items():
        print(f"{k} run: {note}")
    if not args.smoke:
        for k, what in ((as_installed, "no bridge"), (f"{as_installed}+bridge", "bridge answering")):
            if k in cpu:
                common.summary(f"zeek CPU with the package ({as_installed} recording), {what} / plain zeek",
                               f"{common.median(cpu[k]) / base:.2f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
