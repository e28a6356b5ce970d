"""Peak memory of `msewatch analyze` on a capture of many short flows, against the engine alone.

    .venv/bin/python benchmarks/bench_analyze_memory.py [--flows N] [--hosts H]

Writes a pcap of N SYN-only TCP flows (issue 11's reproducer: every flow a single SYN from one
of H local hosts to a distinct remote address; 1,000,000 by default, 70 MB), then runs, each in a
fresh child process reading its own peak RSS (VmHWM):

  engine    the peer: run_pcaps() over the capture with the default config, every verdict
            consumed and dropped. What the engine itself needs (its flow table is capped by
            flow_table.max_flows, so this is flat in N once the table is full)
  analyze   `msewatch analyze CAPTURE -o /dev/null` in-process (summary on, as a user runs
            it): verdicts are written out as they are decided; only the summary's counters,
            a bounded host table and the flagged hosts are kept

and prints both peaks and the ratio analyze/engine. Before issue 11 item 4, analyze kept every
verdict dict: 1M flows took 1.33 GB against 274 MiB for the engine alone.
MSEWATCH_BENCH_BRIDGE=/path/to/other/bridge measures another copy of the package (A/B).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def peak_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def write_syn_pcap(path: Path, flows: int, hosts: int) -> None:
    """Classic pcap, Ethernet, one 54-byte IPv4/TCP SYN per flow, 10 µs apart."""
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    rec = struct.Struct("<IIII")
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        chunk = []
        ts0 = 1_700_000_000
        for i in range(flows):
            src = (0x0A010000 + i % hosts).to_bytes(4, "big")
            dst = (0x2D000000 + i).to_bytes(4, "big")
            ip = b"\x45\x00\x00\x28\x00\x00\x40\x00\x40\x06\x00\x00" + src + dst
            tcp = struct.pack("!HHIIBBHHH", 1024 + (i // hosts) % 60000, 6881 if i & 1 else 443, i, 0,
                              0x50, 0x02, 65535, 0, 0)
            us = i * 10
            pkt = eth + ip + tcp
            chunk.append(rec.pack(ts0 + us // 1_000_000, us % 1_000_000, len(pkt), len(pkt)) + pkt)
            if len(chunk) == 65536:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))


def child_engine(pcap: str) -> dict:
    from msewatch.config import Config
    from msewatch.engine import Engine, run_pcaps

    n = 0
    for _ in run_pcaps([pcap], Engine(Config())):
        n += 1
    return {"verdicts": n, "peak": peak_kib()}


def child_analyze(pcap: str) -> dict:
    from msewatch.cli import main

    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    os.dup2(devnull, 2)  # the summary table goes to stderr: not into our JSON line
    try:
        rc = main(["analyze", pcap, "-o", os.devnull, "--no-progress"])
    finally:
        os.dup2(saved, 2)
    return {"rc": rc, "peak": peak_kib()}


CHILDREN = {"engine": child_engine, "analyze": child_analyze}


def run_child(name: str, pcap: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", name, str(pcap)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--hosts", type=int, default=1024, help="distinct local hosts the SYNs come from")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("pcap", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.pcap)))
        return 0

    print(common.machine_line())
    print(f"package: {common.BRIDGE}")
    with tempfile.TemporaryDirectory(prefix="bench-analyze-mem-") as tmp:
        pcap = Path(tmp) / "syn_only.pcap"
        write_syn_pcap(pcap, args.flows, args.hosts)
        print(f"{args.flows:,} SYN-only TCP flows from {args.hosts} local hosts, "
              f"{pcap.stat().st_size / 1e6:.0f} MB pcap; each run in a fresh process\n")
        eng = run_child("engine", pcap)
        ana = run_child("analyze", pcap)
    if ana["rc"] != 0:
        raise SystemExit(f"analyze exited {ana['rc']}")
    ratio = ana["peak"] / eng["peak"]
    print(f"{'run':10} {'peak RSS':>10}")
    print(f"{'engine':10} {eng['peak'] / 1024:8.0f}Mi   ({eng['verdicts']:,} verdicts consumed and dropped)")
    print(f"{'analyze':10} {ana['peak'] / 1024:8.0f}Mi")
    print(f"ratio analyze/engine: {ratio:.2f}x")
    common.summary(f"analyze peak RSS, {args.flows:,} SYN-only flows",
                   f"{ana['peak'] / 1024:.0f} MiB vs engine alone {eng['peak'] / 1024:.0f} MiB ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
