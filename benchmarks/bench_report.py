"""How long does `msewatch report` take on a large input?

Generates N synthetic flow verdicts (+ host verdicts) and their evidence records (default
100,000 flows; synthetic data is fine for a speed benchmark: the report's cost depends on the
record count and shape, not on where the bytes came from), writes them as the JSON lines that
`msewatch analyze` and `msewatch evidence` write, then times

  report : build_report(verdicts=..., evidence=...) + writing the HTML file, i.e. reading
           and parsing the verdicts, streaming the evidence file, summarising every flow,
           drawing the top-N flows and top hosts, rendering;
  floor  : json.dumps of the same verdict and evidence records to a file (the peer: writing
           the records once, with no analysis at all).

Usage: python benchmarks/bench_report.py [--flows 100000] [--top 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUT, machine_line, summary  # noqa: E402

import orjson  # noqa: E402

PROTOS = ["bt_mse", "tracker", "dht", "utp", "bt_plain", None]


def synthesize(n: int, seed: int = 1) -> tuple[list[dict], list[dict], list[dict]]:
    """n flow verdicts, their evidence records and host verdicts (1 host per 50 flows)."""
    rng = random.Random(seed)
    n_hosts = max(1, n // 50)
    flows, evidence, hosts = [], [], []
    t0 = 1_800_000_000.0
    for i in range(n):
        uid = f"C{i:017d}"
        h = f"10.{(i % n_hosts) // 250}.{(i % n_hosts) % 250}.{1 + i % 7}"
        remote = f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        ts = t0 + i * 0.05
        r = rng.random()
        if r < 0.03:  # an MSE-shaped flow
            label, proto, p = "p2p_likely", "bt_mse", 0.9 + rng.random() * 0.1
            bursts = [rng.randint(96, 608), -rng.randint(96, 608), rng.randint(124, 636), -rng.randint(14, 526)]
            sizes = [bursts[0], bursts[1], bursts[2], bursts[3]] + [rng.choice((-1, 1)) * rng.randint(60, 1448) for _ in range(12)]
            head = rng.randbytes(min(256, bursts[0]))
            rhead = rng.randbytes(min(256, -bursts[1]))
            resp_p = rng.randint(1024, 65535)
        elif r < 0.06:
            label, proto, p = "p2p_likely", rng.choice(PROTOS[1:5]), 0.9 + rng.random() * 0.1
            sizes = [rng.randint(40, 300), -rng.randint(40, 900)]
            bursts = sizes[:]
            head, rhead = rng.randbytes(sizes[0] if sizes[0] < 256 else 256), rng.randbytes(64)
            resp_p = rng.randint(1024, 65535)
        elif r < 0.08:
            label, proto, p = "unknown", None, 0.2 + rng.random() * 0.7
            sizes = [rng.randint(100, 1400), -rng.randint(100, 1400), rng.randint(100, 1400)]
            bursts = sizes[:]
            head, rhead = rng.randbytes(256), rng.randbytes(256)
            resp_p = rng.randint(1024, 65535)
        else:  # TLS-ish normal traffic
            label, proto, p = "normal_likely", None, rng.random() * 0.05
            sizes = [517, -1448, -1448, -1200, 80, 120] + [-1448] * rng.randint(0, 20)
            bursts = [517, -4096, 200] + ([-1448 * 10] if len(sizes) > 6 else [])
            head = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(245)
            rhead = b"\x16\x03\x03\x00\x7a\x02" + rng.randbytes(250)
            resp_p = 443
        path = [[1, round(p * 0.8, 4)], [min(len(sizes), 4), round(p, 4)]]
        flows.append({
            "type": "flow", "ts": ts, "uid": uid, "community_id": "1:" + "A" * 27 + "=", "proto": "tcp",
            "orig_h": h, "orig_p": 40000 + i % 20000, "resp_h": remote, "resp_p": resp_p, "label": label,
            "protocol": proto, "probability": round(p, 4), "flow_probability": round(p, 4), "host_score": -2.0,
            "decided_at_packet": path[-1][0], "decided_at": ts + 0.01 * path[-1][0],
            "reasons": [f"{proto or 'tls_like'}=1.00", "popcount=4.01", f"burst1={bursts[0]}"],
            "families": ["randomness", "handshake_shape"] if proto == "bt_mse" else [],
            "score_path": path,
        })
        evidence.append({
            "uid": uid, "community_id": "1:" + "A" * 27 + "=", "proto": "tcp", "orig_h": h, "orig_p": 40000 + i % 20000,
            "resp_h": remote, "resp_p": resp_p, "ts": ts, "sizes": sizes, "times": [0.001 * k for k in range(len(sizes))],
            "bursts": bursts, "orig_heads": [head.hex()], "resp_heads": [rhead.hex()], "orig_pkts": 20, "resp_pkts": 20,
            "orig_bytes": 5000, "resp_bytes": 50000, "duration": 1.0, "handshake": True, "closed": True, "complete": True,
        })
    for j in range(n_hosts):
        h = f"10.{j // 250}.{j % 250}.1"
        score = rng.uniform(-4, 6)
        hosts.append({
            "type": "host", "ts": t0 + n * 0.05, "host": h,
            "label": "p2p_host" if score > 2 else ("normal_host" if score < -1 else "unknown"),
            "score": round(score, 4), "probability": 0.5, "reasons": ["p2p_flows=1.0", "remote_ips_2m=12"],
        })
    return flows, evidence, hosts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--top", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from msewatch.report import build_report, write_report

    print(machine_line())
    flows, evidence, hosts = synthesize(args.flows)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        vpath, epath = os.path.join(tmp, "verdicts.jsonl"), os.path.join(tmp, "evidence.jsonl")
        with open(vpath, "wb") as f:
            for d in flows + hosts:
                f.write(orjson.dumps(d) + b"\n")
        with open(epath, "wb") as f:
            for d in evidence:
                f.write(orjson.dumps(d) + b"\n")
        sizes_mb = (os.path.getsize(vpath) + os.path.getsize(epath)) / 1e6
        print(f"input: {args.flows} flow verdicts, {len(hosts)} host verdicts, {args.flows} evidence records "
              f"({sizes_mb:.0f} MB of JSON lines)")
        report_t, floor_t = [], []
        out_html = os.path.join(tmp, "report.html")
        for _ in range(args.repeat):
            t = time.perf_counter()
            with open(os.path.join(tmp, "floor.json"), "w") as f:
                for d in flows + hosts + evidence:
                    f.write(json.dumps(d))
                    f.write("\n")
            floor_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            html = build_report(verdicts=vpath, evidence=epath, top=args.top)
            write_report(out_html, html)
            report_t.append(time.perf_counter() - t)
        html_kb = os.path.getsize(out_html) / 1024
    rep, floor = statistics.median(report_t), statistics.median(floor_t)
    print(f"{'step':<44}{'seconds (median of ' + str(args.repeat) + ')':>26}")
    print(f"{'json.dumps of the same records (floor)':<44}{floor:>26.2f}")
    print(f"{'msewatch report (top ' + str(args.top) + ' flows in detail)':<44}{rep:>26.2f}")
    print(f"report / floor: {rep / floor:.2f}x; HTML {html_kb:.0f} KiB")
    summary("report_100k_seconds" if args.flows == 100_000 else f"report_{args.flows}_seconds", f"{rep:.2f}")
    summary("report_vs_json_dumps", f"{rep / floor:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
