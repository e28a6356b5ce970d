"""Pcap throughput of `msewatch analyze` against nDPI's `ndpiReader` on the same capture, same run.

    .venv/bin/python benchmarks/bench_throughput.py [capture.pcap] [--runs N] [--jobs 1,2] [--pure]
    .venv/bin/python benchmarks/bench_throughput.py --profile [capture.pcap]    # cProfile, in-process
    .venv/bin/python benchmarks/bench_throughput.py --jobs-diff 2 [capture.pcap] # --jobs N vs 1 verdicts
    .venv/bin/python benchmarks/bench_throughput.py --smoke                      # CI: tiny, no timing

Without a capture it builds one from the committed real-client corpus (tests/data/corpus/*.pcap):
the captures merged in time and repeated, each copy with its private addresses and timestamps
shifted so that every copy's flows are distinct, until ~400k packets (benchmarks/out/, cached).

Every tool runs as the user would run it, as a child process, one warm-up run each (the capture
is then in the page cache), then `--runs` rounds in which the tools take turns:

    msewatch analyze CAPTURE -q -o /dev/null --no-progress [--jobs N]   (for each N of --jobs)
    ndpiReader -i CAPTURE -q -w /dev/null
    MSEWATCH_PURE_PYTHON=1 msewatch analyze ...                          (with --pure)

It prints per tool the median wall and CPU time (user + system, getrusage(RUSAGE_CHILDREN)
deltas) with their ranges, peak RSS and packets/s, then the ratio msewatch/ndpiReader in
packets/s by wall time and by CPU time (the target of issue 12: >= 1.0). The machine is shared:
the CPU ratio is the steadier one, and the load average is printed with the results. Start-up
(interpreter, imports, nDPI's set-up) is measured on a 10-packet capture and shown both ways.

Last, an in-process breakdown explains the ratio: CPU for the compiled packet path alone, for
handing each flow to Python (the engine's _Flow, the evidence snapshot, the uid), and for
deciding (detectors, flow score, host model), each the minimum of 3 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def tiny_capture(src: Path, n: int = 10, out_dir: Path = common.OUT) -> Path:
    """The first n records of `src`: measures each tool's fixed start-up cost."""
    import dpkt

    out = out_dir / "startup_10pkts.pcap"
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as f, open(out, "wb") as g:
        pcapng = f.read(4) == b"\x0a\x0d\x0d\x0a"
        f.seek(0)
        r = dpkt.pcapng.Reader(f) if pcapng else dpkt.pcap.Reader(f)
        w = dpkt.pcap.Writer(g, snaplen=262144, linktype=r.datalink())
        for i, (ts, buf) in enumerate(r):
            if i >= n:
                break
            w.writepkt(buf, ts=ts)
    return out


# --------------------------------------------------------------------------- in-process measures

def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def breakdown(capture: Path, repeat: int = 3) -> dict:
    """CPU seconds (min of `repeat`) of the stages of the compiled path, in this process."""
    from msewatch import fastpath
    from msewatch.engine import Engine, run_pcaps

    if not fastpath.available():
        return {}

    def c_only() -> tuple[float, int]:
        eng = Engine()
        n = [0]

        def count(*_a) -> bool:
            n[0] += 1
            return False

        table = fastpath._c.FlowTable(max_packets=eng._max_packets, max_bursts=eng._max_bursts,
                                      head_bytes=eng._head, udp_heads=eng._udp_heads, max_age=eng._max_age,
                                      max_flows=eng._max_flows, tcp_timeout=eng._timeouts[6],
                                      udp_timeout=eng._timeouts[17], sweep_every=eng._sweep_every,
                                      next_sweep=0.0, emit=count, sweep=None,
                                      size_from_headers=fastpath._sizes_from_headers())
        c0 = _cpu()
        f, name = fastpath.open_capture(str(capture))
        with f:
            reader = fastpath.open_reader(f, name)
            while reader.run(table, 1 << 40):
                pass
        table.flush()
        return _cpu() - c0, n[0]

    class Undecided(Engine):
        def process_evidence(self, ev):
            return []

    def run(engine_cls) -> tuple[float, int]:
        eng = engine_cls()
        c0 = _cpu()
        for _ in run_pcaps([str(capture)], eng):
            pass
        return _cpu() - c0, eng.stats.evidence_emitted

    out = {}
    for name, fn in (("packet path in C", c_only), ("+ flows to Python", lambda: run(Undecided)),
                     ("+ deciding", lambda: run(Engine))):
        best = min((fn() for _ in range(repeat)), key=lambda x: x[0])
        out[name] = best
    return out


def jobs_scaling(capture: Path, jobs: list[int]) -> dict[int, tuple[float, float, list[float]]]:
    """In-process `--jobs N` runs: (parent CPU without the plan, plan CPU, each worker's CPU).
    On a busy machine wall time cannot show what N cores would do; the critical path can:
    start-up + plan + the slowest worker (+ the parent's merge, which overlaps the workers)."""
    from msewatch.config import Config
    from msewatch.jobs import ShardedRun

    out = {}
    for n in jobs:
        if n < 2:
            continue
        c0 = _cpu()
        run = ShardedRun(Config(), n, [str(capture)])
        for _ in run.run():
            pass
        out[n] = (_cpu() - c0 - run.plan_cpu, run.plan_cpu, list(run.worker_cpu))
    return out


def profile(capture: Path, top: int) -> None:
    import cProfile
    import pstats

    from msewatch import fastpath
    from msewatch.engine import Engine, run_pcaps

    eng = Engine()
    print(fastpath.status())
    pr = cProfile.Profile()
    pr.enable()
    for _ in run_pcaps([str(capture)], eng):
        pass
    pr.disable()
    print(f"cProfile of run_pcaps on {capture.name} ({eng.stats.packets} packets, {eng.stats.flows} flows)")
    st = pstats.Stats(pr)
    st.sort_stats("tottime").print_stats(top)
    st.sort_stats("cumulative").print_stats(top)


# --------------------------------------------------------------------------- --jobs N vs 1

def jobs_diff(capture: Path, jobs: int) -> dict:
    """Run analyze with --jobs 1 and --jobs N; count how the verdicts differ (docs/performance.md)."""
    import subprocess

    outs = []
    for j in (1, jobs):
        cmd = common.msewatch_cmd(capture) + ["--jobs", str(j)]
        cmd[cmd.index("/dev/null")] = "-"  # verdicts to stdout
        p = subprocess.run(cmd, capture_output=True, text=True, check=True)
        outs.append([json.loads(line) for line in p.stdout.splitlines()])
    a, b = outs
    fa = {v["uid"]: v for v in a if v["type"] == "flow"}
    fb = {v["uid"]: v for v in b if v["type"] == "flow"}
    res = {"flows": len(fa), "identical": 0, "differ": 0, "label_changed": 0, "missing": len(set(fa) - set(fb)),
           "only_peer_cache": 0, "same_order": [v.get("uid", v.get("host")) for v in a] ==
           [v.get("uid", v.get("host")) for v in b]}
    for uid, v in fa.items():
        w = fb.get(uid)
        if w is None:
            continue
        if v == w:
            res["identical"] += 1
            continue
        res["differ"] += 1
        res["label_changed"] += v["label"] != w["label"]
        changed = {r.split("=")[0] for r in set(v["reasons"]) ^ set(w["reasons"])}
        res["only_peer_cache"] += changed <= {"peer_cache"}
    from msewatch.config import Config
    from msewatch.jobs import plan

    p = plan(Config(), [str(capture)], jobs)
    res["plan"] = {"host_groups": p.groups, "largest_group_flows": p.largest_group,
                   "flows_per_worker": p.flows_per_shard}
    ha = [v for v in a if v["type"] == "host"]
    hb = [v for v in b if v["type"] == "host"]
    res["host_verdicts"] = (len(ha), len(hb))
    res["host_verdicts_identical"] = ha == hb
    return res


# --------------------------------------------------------------------------- main

def packet_path_status() -> str:
    """fastpath.status() from a child: importing msewatch here would inflate the children's peak
    RSS (a forked child's high-water mark starts at the parent's RSS)."""
    import subprocess

    exe = common.VENV_BIN / "python"
    py = str(exe) if exe.exists() else sys.executable
    p = subprocess.run([py, "-c", "from msewatch.fastpath import status; print(status())"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(common.BRIDGE)})
    return (p.stdout or p.stderr).strip()


def _fmt_range(xs: list[float]) -> str:
    return f"{statistics.median(xs):5.2f} [{min(xs):.2f}-{max(xs):.2f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?", help="pcap to measure (default: build one from the corpus)")
    ap.add_argument("--runs", type=int, default=5, help="timed rounds (median and range reported)")
    ap.add_argument("--packets", type=int, default=400_000, help="size of the built capture")
    ap.add_argument("--jobs", default="1,2", help="msewatch --jobs values to run (comma-separated)")
    ap.add_argument("--pure", action="store_true", help="also time the pure-Python packet path")
    ap.add_argument("--profile", action="store_true", help="cProfile the engine in-process instead of timing")
    ap.add_argument("--jobs-diff", type=int, metavar="N", help="count verdict differences of --jobs N vs 1")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the in-process breakdown")
    ap.add_argument("--smoke", action="store_true", help="CI: a small capture, one round, nothing timed asserted")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)

    if args.smoke:
        out_dir = common.OUT / "smoke"
        capture = Path(args.capture) if args.capture else common.build_bench_capture(30_000, out=out_dir)
        args.runs, args.pure = 1, True
    else:
        out_dir = common.OUT
        capture = Path(args.capture) if args.capture else common.build_bench_capture(args.packets)
    if args.profile:
        profile(capture, args.top)
        return 0
    if args.jobs_diff:
        res = jobs_diff(capture, args.jobs_diff)
        print(json.dumps(res, indent=1))
        common.summary(f"--jobs {args.jobs_diff} vs 1 on {capture.name}",
                       f"{res['identical']:,} of {res['flows']:,} flow verdicts identical, {res['differ']:,} differ"
                       f" ({res['label_changed']:,} labels, {res['only_peer_cache']:,} only by the peer cache)")
        return 0

    print(common.machine_line())
    print(packet_path_status())
    print(common.byte_compile_package())
    ndpi = common.find_ndpi_reader()
    if ndpi is None and not args.smoke:
        print("ndpiReader not found (Debian: apt-get install libndpi-bin; or `make system-deps`):"
              " no peer to compare against", file=sys.stderr)
        return 2
    records, wire_bytes, duration = common.capture_stats(capture)
    print(f"capture: {capture} ({records:,} packets, {wire_bytes / 1e6:.1f} MB,"
          f" {duration:.1f} s of traffic, {os.path.getsize(capture) / 1e6:.1f} MB file)")
    if ndpi:
        print(f"peer: {ndpi} ({common.ndpi_version(ndpi)})")

    jobs = [int(j) for j in args.jobs.split(",") if j.strip()]
    tools: dict[str, tuple[list[str], dict | None]] = {}
    for j in jobs:
        tools[f"msewatch -j{j}" if len(jobs) > 1 else "msewatch"] = (common.msewatch_cmd(capture) + ["--jobs", str(j)], None)
    if args.pure:
        tools["msewatch pure-Python"] = (common.msewatch_cmd(capture), {"MSEWATCH_PURE_PYTHON": "1"})
    if ndpi:
        tools["ndpiReader"] = ([ndpi, "-i", str(capture), "-q", "-w", "/dev/null"], None)
    main_tool = next(iter(tools))

    tiny = tiny_capture(capture, out_dir=out_dir)
    runs: dict[str, list[common.ChildRun]] = {t: [] for t in tools}
    startup: dict[str, list[common.ChildRun]] = {t: [] for t in tools}
    for name, (cmd, env) in tools.items():  # warm-up: page cache
        common.run_child(cmd, env=env)
        for _ in range(3):
            startup[name].append(common.run_child([tiny if c == str(capture) else c for c in map(str, cmd)], env=env))
    load0 = os.getloadavg()
    for _ in range(args.runs):
        for name, (cmd, env) in tools.items():
            runs[name].append(common.run_child(cmd, env=env))
    load1 = os.getloadavg()

    med = statistics.median
    print(f"\n{args.runs} rounds, tools alternating; load average {load0[0]:.1f} before, {load1[0]:.1f} after"
          f" ({os.cpu_count()} CPUs)")
    print(f"{'tool':21} {'wall s [range]':>18} {'CPU s [range]':>18} {'RSS MB':>7} {'pkts/s wall':>12}"
          f" {'pkts/s CPU':>11} {'start-up wall/CPU s':>20}")
    rate, rate_cpu, start_cpu = {}, {}, {}
    for name in tools:
        rs = runs[name]
        walls = [r.wall for r in rs]
        cpus = [r.user + r.sys for r in rs]
        rate[name] = records / med(walls)
        rate_cpu[name] = records / med(cpus)
        st_wall = med([r.wall for r in startup[name]])
        start_cpu[name] = med([r.user + r.sys for r in startup[name]])
        print(f"{name:21} {_fmt_range(walls):>18} {_fmt_range(cpus):>18} {max(r.maxrss_kib for r in rs) / 1024:7.0f}"
              f" {rate[name]:12,.0f} {rate_cpu[name]:11,.0f} {st_wall:9.3f} / {start_cpu[name]:.3f}")

    if ndpi:
        print()
        for name in tools:
            if name == "ndpiReader":
                continue
            r_wall = rate[name] / rate["ndpiReader"]
            r_cpu = rate_cpu[name] / rate_cpu["ndpiReader"]
            cpu_wo = med([r.user + r.sys for r in runs[name]]) - start_cpu[name]
            cpu_wo_n = med([r.user + r.sys for r in runs["ndpiReader"]]) - start_cpu["ndpiReader"]
            # without start-up: meaningful only when the capture costs more than starting does
            r_steady = cpu_wo_n / cpu_wo if cpu_wo > 0.05 and cpu_wo_n > 0.05 else float("nan")
            print(f"ratio {name}/ndpiReader packets/s: {r_wall:.2f} by wall time, {r_cpu:.2f} by CPU time,"
                  f" {r_steady:.2f} by CPU without start-up (target >= 1.0)")
            if name == main_tool:
                verdict = "meets" if min(r_wall, r_cpu) >= 1.0 else "MISSES"
                common.summary("throughput ratio msewatch/ndpiReader",
                               f"{r_wall:.2f} wall, {r_cpu:.2f} CPU (target >= 1.0: {verdict});"
                               f" {r_steady:.2f} CPU without start-up")
            elif name.startswith("msewatch -j"):
                common.summary(f"throughput ratio {name}/ndpiReader", f"{r_wall:.2f} wall, {r_cpu:.2f} CPU")
            else:
                common.summary(f"throughput ratio {name}/ndpiReader", f"{r_wall:.2f} wall, {r_cpu:.2f} CPU")
        common.summary("throughput ndpiReader", f"{rate['ndpiReader']:,.0f} pkts/s")
    common.summary("throughput msewatch", f"{rate[main_tool]:,.0f} pkts/s (wall), {rate_cpu[main_tool]:,.0f} by CPU;"
                   f" start-up {start_cpu[main_tool]:.2f} s CPU")

    if not args.no_breakdown:
        b = breakdown(capture, 1 if args.smoke else 3)
        if b:
            c, _ = b["packet path in C"]
            e, flows = b["+ flows to Python"]
            d, _ = b["+ deciding"]
            total = start_cpu[main_tool] + d
            print(f"\nwhere {main_tool}'s CPU goes (in-process, min of runs; {flows:,} flows):")
            rows = [("start-up (interpreter, imports)", start_cpu[main_tool]),
                    ("packet path in C (read, decode, flow table)", c),
                    ("flows to Python (_Flow, evidence snapshot, uid)", e - c),
                    ("deciding (detectors, flow score, host model)", d - e)]
            for what, s in rows:
                print(f"  {what:48} {s:6.3f} s {100 * s / total:5.1f} %  {1e6 * s / max(flows, 1):7.1f} us/flow")
            if ndpi:
                nd = med([r.user + r.sys for r in runs["ndpiReader"]])
                print(f"  {'ndpiReader, whole process':48} {nd:6.3f} s")
                common.summary("CPU breakdown", f"start-up {rows[0][1]:.2f} s, C packet path {c:.2f} s, flows to"
                               f" Python {e - c:.2f} s, deciding {d - e:.2f} s ({1e6 * (d - e) / max(flows, 1):.0f}"
                               f" us/flow); ndpiReader {nd:.2f} s")
            scaling = jobs_scaling(capture, jobs)
            if scaling:
                st = start_cpu[main_tool]
                print(f"\n--jobs critical path (in-process CPU; what N idle cores would take):")
                print(f"  {'jobs':>4} {'start-up':>9} {'plan':>6} {'slowest worker':>15} {'merge':>6} {'critical path':>14}"
                      f" {'vs 1 job':>9} {'total CPU':>10}")
                print(f"  {1:4} {st:9.3f} {0:6.3f} {d:15.3f} {0:6.3f} {st + d:14.3f} {1:9.2f} {st + d:10.3f}")
                for n, (merge, plan_cpu, workers) in scaling.items():
                    cp = st + plan_cpu + max(workers)
                    print(f"  {n:4} {st:9.3f} {plan_cpu:6.3f} {max(workers):15.3f} {merge:6.3f} {cp:14.3f}"
                          f" {(st + d) / cp:9.2f} {st + plan_cpu + merge + sum(workers):10.3f}")
                    common.summary(f"--jobs {n} critical path", f"{cp:.2f} s CPU vs {st + d:.2f} s for one job"
                                   f" ({(st + d) / cp:.2f}x); workers {', '.join(f'{w:.2f}' for w in workers)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
