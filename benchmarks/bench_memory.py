"""Peak memory of the engine's flow table with 1,000,000 distinct flows, against a plain dict floor.

    .venv/bin/python benchmarks/bench_memory.py [--flows N] [--hosts H] [--path python,c] [--smoke]

Engine.process_packet is fed directly (no pcap): every flow is a TCP SYN from a local host
(10.x, one of --hosts) to a distinct remote address, then one 100-byte payload packet from the
originator, so every flow holds early evidence (one size, one time, one burst, one 100-byte head)
and is still open. Each scenario runs in a fresh child process and reads its own VmRSS/VmHWM from
/proc/self/status (ru_maxrss as a fallback):

  floor      a plain dict {5-tuple: (ts, last, pkts, bytes)} with the same 1M keys: what holding
             1M keyed entries costs in CPython at least
  unbounded  flow_table.max_flows = N+, idle timeouts 1e9 s: all N flows stay tracked;
             bytes per tracked flow = (RSS after - RSS before) / N. Target: < 1 KiB
  bounded    the default config (max_flows 200,000): N flows pass; the oldest are evicted and
             decided. RSS is sampled every 200k flows and must stay flat after the table is full
  full       100k flows each holding a full evidence budget (31 payload packets in 8 bursts and a
             256-byte head each way): the per-flow worst case before the budget is spent

Each engine scenario runs for both packet paths: `python` (Engine.process_packet) and `c` (the
compiled flow table of msewatch.fastpath, fed the same packets through FlowTable.packet, which
`msewatch analyze` uses when the extension is built).

The packet tuples (addresses, payloads) are made per flow inside the measured window, as a packet
source would make them; the payload bytes the engine keeps are distinct objects per flow.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SYN, ACK, PSH = 0x02, 0x10, 0x08
_PAD = bytes(range(96))


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        hwm = rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss, hwm


def flow_endpoints(i: int, hosts: int) -> tuple[bytes, int, bytes, int]:
    """Flow i: local 10.1.0.0/16 host (i % hosts) -> a distinct remote in 45.0.0.0/8 and up."""
    src = (0x0A010000 + i % hosts).to_bytes(4, "big")
    dst = (0x2D000000 + i).to_bytes(4, "big")
    return src, 1024 + (i // hosts) % 60000, dst, 6881 if i & 1 else 443


class Feed:
    """The packet path under test: Engine.process_packet, or the compiled table feeding the engine."""

    def __init__(self, max_flows: int | None, path: str) -> None:
        self.eng = make_engine(max_flows)
        self.table = None
        if path == "c":
            from msewatch import fastpath

            if not fastpath.available():
                raise SystemExit(f"the compiled packet path is not available: {fastpath.status()}")
            self.table = fastpath.make_table(self.eng)
            self.proc = self.table.packet
        else:
            self.proc = self.eng.process_packet

    def tracked(self) -> int:
        return self.table.tracked if self.table is not None else len(self.eng.flows)

    def sync(self) -> None:
        """The C table's counters (evictions, timeouts) into the engine's stats."""
        if self.table is not None:
            from msewatch import fastpath

            fastpath.sync_counters(self.table, self.eng)


def make_engine(max_flows: int | None):
    from msewatch.config import Config, FlowTableConfig
    from msewatch.engine import Engine

    if max_flows is None:
        return Engine(Config())
    ft = FlowTableConfig(max_flows=max_flows, tcp_idle_timeout=1e9, udp_idle_timeout=1e9, sweep_interval=1e9)
    return Engine(Config(flow_table=ft))


def child_floor(n: int, hosts: int, path: str) -> dict:
    gc.collect()
    before, _ = rss_kib()
    t0 = time.perf_counter()
    table = {}
    ts = 1_700_000_000.0
    for i in range(n):
        src, sport, dst, dport = flow_endpoints(i, hosts)
        t = ts + i * 1e-5
        table[(6, src, sport, dst, dport)] = (t, t, 2, 100)
    el = time.perf_counter() - t0
    after, hwm = rss_kib()
    return {"flows": n, "tracked": len(table), "before": before, "after": after, "hwm": hwm, "secs": el}


def child_unbounded(n: int, hosts: int, path: str) -> dict:
    feed = Feed(n + 16, path)
    eng, proc = feed.eng, feed.proc
    gc.collect()
    before, _ = rss_kib()
    t0 = time.perf_counter()
    ts = 1_700_000_000.0
    for i in range(n):
        src, sport, dst, dport = flow_endpoints(i, hosts)
        t = ts + i * 1e-5
        proc(t, 6, src, sport, dst, dport, SYN, b"")
        proc(t + 1e-6, 6, src, sport, dst, dport, PSH | ACK, i.to_bytes(4, "big") + _PAD)
    el = time.perf_counter() - t0
    gc.collect()
    after, hwm = rss_kib()
    return {"flows": n, "tracked": feed.tracked(), "before": before, "after": after, "hwm": hwm, "secs": el,
            "evicted": eng.stats.flows_evicted}


def child_bounded(n: int, hosts: int, path: str) -> dict:
    feed = Feed(None, path)
    eng, proc = feed.eng, feed.proc
    gc.collect()
    before, _ = rss_kib()
    samples = []
    t0 = time.perf_counter()
    ts = 1_700_000_000.0
    step = max(n // 5, 1)
    for i in range(n):
        src, sport, dst, dport = flow_endpoints(i, hosts)
        t = ts + i * 1e-5
        proc(t, 6, src, sport, dst, dport, SYN, b"")
        proc(t + 1e-6, 6, src, sport, dst, dport, PSH | ACK, i.to_bytes(4, "big") + _PAD)
        if eng.pending:
            eng.drain()  # a consumer takes the verdicts
        if (i + 1) % step == 0:
            samples.append((i + 1, rss_kib()[0], feed.tracked(), len(getattr(eng, "_local_cache", ()))))
    el = time.perf_counter() - t0
    after, hwm = rss_kib()
    feed.sync()
    return {"flows": n, "tracked": feed.tracked(), "before": before, "after": after, "hwm": hwm, "secs": el,
            "evicted": eng.stats.flows_evicted, "samples": samples, "hosts": len(eng.hosts.hosts),
            "max_flows": eng.cfg.flow_table.max_flows,
            # the engine's other tables, to tell what grows when the flow table does not
            "local_cache": len(getattr(eng, "_local_cache", ())), "peer_cache": len(getattr(eng, "_peer_cache", ()))}


def child_full(n: int, hosts: int, path: str) -> dict:
    """Each flow: SYN, SYN/ACK, then 31 payload packets in 8 direction runs (4+4+4+4+4+4+4+3)."""
    feed = Feed(n + 16, path)
    eng = feed.eng
    if eng.cfg.budget.max_packets != 32 or eng.cfg.budget.max_bursts != 8:
        raise SystemExit("the 'full' scenario assumes the default budget (32 packets, 8 bursts)")
    proc = feed.proc
    runs = (4, 4, 4, 4, 4, 4, 4, 3)
    gc.collect()
    before, _ = rss_kib()
    t0 = time.perf_counter()
    ts = 1_700_000_000.0
    for i in range(n):
        src, sport, dst, dport = flow_endpoints(i, hosts)
        t = ts + i * 1e-4
        proc(t, 6, src, sport, dst, dport, SYN, b"")
        proc(t + 1e-6, 6, dst, dport, src, sport, SYN | ACK, b"")
        k = 2
        tag = i.to_bytes(4, "big")
        for r, m in enumerate(runs):
            for _ in range(m):
                payload = tag + bytes([k]) * (600 + 100 * (k % 9))  # >= 256: the head is a full 256
                if r & 1:
                    proc(t + k * 1e-6, 6, dst, dport, src, sport, PSH | ACK, payload)
                else:
                    proc(t + k * 1e-6, 6, src, sport, dst, dport, PSH | ACK, payload)
                k += 1
    el = time.perf_counter() - t0
    gc.collect()
    after, hwm = rss_kib()
    if feed.table is not None:
        from msewatch import fastpath

        fastpath.hand_back(feed.table, eng)  # after the measurement: to check the flows' state
    f = next(iter(eng.flows.values()))
    from msewatch.engine import _S_DONE

    done = bool(f.st & _S_DONE)
    if done or len(f.sizes) != 31 or f.nb != 8 or eng.stats.evidence_emitted:
        raise SystemExit(f"full scenario: flow not at the budget edge (done={done}, {len(f.sizes)} sizes)")
    return {"flows": n, "tracked": len(eng.flows), "before": before, "after": after, "hwm": hwm, "secs": el}


CHILDREN = {"floor": child_floor, "unbounded": child_unbounded, "bounded": child_bounded, "full": child_full}


def run_scenario(name: str, n: int, hosts: int, path: str = "python") -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", name, "--flows", str(n), "--hosts", str(hosts),
                          "--path", path], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"scenario {name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--hosts", type=int, default=1024, help="distinct local hosts the flows come from")
    ap.add_argument("--full-flows", type=int, default=100_000, help="flows in the full-budget scenario")
    ap.add_argument("--path", default="python,c", help="packet paths to measure: python, c or both")
    ap.add_argument("--smoke", action="store_true", help="CI: 20k flows, nothing asserted about the numbers")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(CHILDREN[args.child](args.flows, args.hosts, args.path)))
        return 0
    if args.smoke:
        args.flows, args.full_flows = 20_000, 5_000
    paths = [p for p in args.path.split(",") if p]
    if "c" in paths:
        from msewatch import fastpath

        if not fastpath.available():
            print(f"skipping the compiled path: {fastpath.status()}")
            paths.remove("c")

    print(common.machine_line())
    n = args.flows
    print(f"{n:,} distinct TCP flows (SYN + one 100-byte payload each) from {args.hosts} local hosts;"
          " each scenario in a fresh process\n")
    res = {"floor": run_scenario("floor", n, args.hosts)}
    for path in paths:
        for name, count in (("unbounded", n), ("full", args.full_flows), ("bounded", n)):
            res[f"{name} {path}"] = run_scenario(name, count, args.hosts, path)
    for r in res.values():
        r["per_flow"] = (r["after"] - r["before"]) * 1024 / max(r["tracked"], 1)
    floor = res["floor"]["per_flow"]
    print(f"{'scenario':17} {'flows':>9} {'tracked':>9} {'RSS before':>11} {'RSS after':>10} {'peak':>8}"
          f" {'B/tracked flow':>15} {'vs floor':>9} {'secs':>6}")
    for name, r in res.items():
        print(f"{name:17} {r['flows']:9,} {r['tracked']:9,} {r['before'] / 1024:9.1f}Mi {r['after'] / 1024:8.1f}Mi"
              f" {r['hwm'] / 1024:6.0f}Mi {r['per_flow']:15,.0f} {r['per_flow'] / floor:8.2f}x {r['secs']:6.1f}")
    for path in paths:
        report_path(res, path, n, floor)
    return 0


def report_path(res: dict, path: str, n: int, floor: float) -> None:
    b = res[f"bounded {path}"]
    print(f"\n{path} packet path:")
    print(f"  bounded (max_flows {b['max_flows']:,}): {b['evicted']:,} flows evicted and decided,"
          f" {b['hosts']:,} hosts in the host model, {b['peer_cache']:,} peer-cache entries")
    print(f"  {'flows seen':>10} {'RSS':>9} {'tracked':>9} {'local-address cache':>20}")
    for seen, rss, tracked, lc in b["samples"]:
        print(f"  {seen:10,} {rss / 1024:7.1f}Mi {tracked:9,} {lc:20,}")
    s = b["samples"]
    growth = (s[-1][1] - s[0][1]) / 1024
    print(f"  RSS growth from {s[0][0]:,} to {s[-1][0]:,} flows: {growth:+.1f} MiB")
    per = res[f"unbounded {path}"]["per_flow"]
    full = res[f"full {path}"]["per_flow"]
    verdict = "meets" if per < 1024 else "MISSES"
    print(f"  bytes per tracked flow: {per:,.0f} (target < 1024: {verdict} it); floor dict {floor:,.0f};"
          f" ratio engine/floor {per / floor:.2f}; full budget {full:,.0f}")
    common.summary(f"memory bytes per tracked flow ({path})", f"{per:,.0f} (target < 1024: {verdict}); "
                   f"{per / floor:.2f}x a plain dict ({floor:,.0f}); full budget {full:,.0f}")
    common.summary(f"memory bounded {n:,} flows ({path})", f"RSS {growth:+.1f} MiB from {s[0][0]:,} to"
                   f" {s[-1][0]:,} flows (max_flows {b['max_flows']:,})")


if __name__ == "__main__":
    sys.exit(main())
