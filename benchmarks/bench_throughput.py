"""Pcap throughput of `msewatch analyze` against nDPI's `ndpiReader` on the same capture, same run.

    .venv/bin/python benchmarks/bench_throughput.py [capture.pcap] [--runs N] [--packets N]
    .venv/bin/python benchmarks/bench_throughput.py --profile [capture.pcap]

Without a capture it builds one from the committed real-client corpus (tests/data/corpus/*.pcap):
the captures merged in time and repeated, each copy with its private addresses and timestamps
shifted so that every copy's flows are distinct, until ~400k packets (benchmarks/out/, cached).

Both tools run as the user would run them, as child processes, alternately, `--runs` times each
after one warm-up run each (the capture is then in the page cache for both):

    msewatch analyze CAPTURE -q -o /dev/null --no-progress
    ndpiReader -i CAPTURE -q -w /dev/null

It prints the median wall time, the median user/system CPU (getrusage(RUSAGE_CHILDREN) deltas), the
peak RSS, packets/s and Mbit/s of each, and the ratio msewatch/ndpiReader. The target (issue): a
ratio of at least 1/3. Start-up cost (interpreter + imports, nDPI's protocol setup) is part of the
wall time; it is also measured on a 10-packet capture and shown, with the rate without it.

--profile runs the engine in-process under cProfile on the capture and prints the top functions
by own time and by cumulative time (what docs/performance.md quotes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def tiny_capture(src: Path, n: int = 10) -> Path:
    """The first n records of `src`: measures each tool's fixed start-up cost."""
    import dpkt

    out = common.OUT / "startup_10pkts.pcap"
    common.OUT.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as f, open(out, "wb") as g:
        r = dpkt.pcap.Reader(f)
        w = dpkt.pcap.Writer(g, snaplen=262144, linktype=r.datalink())
        for i, (ts, buf) in enumerate(r):
            if i >= n:
                break
            w.writepkt(buf, ts=ts)
    return out


def profile(capture: Path, top: int) -> None:
    import cProfile
    import pstats

    from msewatch.engine import Engine, run_pcaps

    eng = Engine()
    pr = cProfile.Profile()
    pr.enable()
    for _ in run_pcaps([str(capture)], eng):
        pass
    pr.disable()
    print(f"cProfile of run_pcaps on {capture.name} ({eng.stats.packets} packets, {eng.stats.flows} flows)")
    st = pstats.Stats(pr)
    st.sort_stats("tottime").print_stats(top)
    st.sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?", help="pcap to measure (default: build one from the corpus)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per tool (median reported)")
    ap.add_argument("--packets", type=int, default=400_000, help="size of the built capture")
    ap.add_argument("--profile", action="store_true", help="cProfile the engine instead of timing")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)

    capture = Path(args.capture) if args.capture else common.build_bench_capture(args.packets)
    if args.profile:
        profile(capture, args.top)
        return 0

    print(common.machine_line())
    ndpi = common.find_ndpi_reader()
    if ndpi is None:
        print("ndpiReader not found (Debian: apt-get install libndpi-bin; or `make system-deps`):"
              " no peer to compare against", file=sys.stderr)
        return 2
    records, wire_bytes, duration = common.capture_stats(capture)
    print(f"capture: {capture} ({records:,} packets, {wire_bytes / 1e6:.1f} MB,"
          f" {duration:.1f} s of traffic, {os.path.getsize(capture) / 1e6:.1f} MB file)")
    print(f"peer: {ndpi} ({common.ndpi_version(ndpi)})")

    tools = {
        "msewatch": lambda p: common.msewatch_cmd(p),
        "ndpiReader": lambda p: [ndpi, "-i", str(p), "-q", "-w", "/dev/null"],
    }
    tiny = tiny_capture(capture)
    runs: dict[str, list[common.ChildRun]] = {t: [] for t in tools}
    startup: dict[str, list[float]] = {t: [] for t in tools}
    for name, cmd in tools.items():  # warm-up: page cache, .pyc files
        common.run_child(cmd(capture))
        for _ in range(3):
            startup[name].append(common.run_child(cmd(tiny)).wall)
    for _ in range(args.runs):
        for name, cmd in tools.items():
            runs[name].append(common.run_child(cmd(capture)))

    med = common.median
    rate: dict[str, float] = {}
    rate_steady: dict[str, float] = {}
    print()
    print(f"{'tool':11} {'wall s':>7} {'user s':>7} {'sys s':>6} {'RSS MB':>7} {'pkts/s':>11} {'Mbit/s':>8}"
          f" {'start s':>8} {'pkts/s w/o start':>17}")
    for name in tools:
        rs = runs[name]
        wall = med([r.wall for r in rs])
        user = med([r.user for r in rs])
        sys_ = med([r.sys for r in rs])
        rss = max(r.maxrss_kib for r in rs) / 1024
        st = med(startup[name])
        rate[name] = records / wall
        rate_steady[name] = records / max(wall - st, 1e-9)
        print(f"{name:11} {wall:7.2f} {user:7.2f} {sys_:6.2f} {rss:7.0f} {rate[name]:11,.0f}"
              f" {wire_bytes * 8 / wall / 1e6:8,.0f} {st:8.3f} {rate_steady[name]:17,.0f}")
    ratio = rate["msewatch"] / rate["ndpiReader"]
    ratio_steady = rate_steady["msewatch"] / rate_steady["ndpiReader"]
    cpu_ratio = (med([r.user + r.sys for r in runs["ndpiReader"]])
                 / med([r.user + r.sys for r in runs["msewatch"]]))
    print()
    print(f"ratio msewatch/ndpiReader throughput: {ratio:.2f} (wall, start-up included), "
          f"{ratio_steady:.2f} (start-up excluded), {cpu_ratio:.2f} (CPU time)")
    verdict = "meets" if ratio >= 1 / 3 else "MISSES"
    print(f"target >= 0.33 (one third of ndpiReader): {verdict} it end to end")
    common.summary("throughput msewatch", f"{rate['msewatch']:,.0f} pkts/s")
    common.summary("throughput ndpiReader", f"{rate['ndpiReader']:,.0f} pkts/s")
    common.summary("throughput ratio msewatch/ndpiReader", f"{ratio:.2f} (target >= 0.33: {verdict});"
                   f" {ratio_steady:.2f} without start-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
