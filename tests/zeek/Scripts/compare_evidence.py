#!/usr/bin/env python3
"""Parity between Zeek's evidence and the offline extractor's on one pcap.

usage: compare_evidence.py ZEEK.jsonl EXTRACTOR.jsonl [--strict-counters]

ZEEK.jsonl comes from dump-evidence.zeek, EXTRACTOR.jsonl from
`msewatch evidence PCAP`; both hold one JSON object per flow with the field
names of docs/evidence.md (ports as numbers, heads as hex).

Flows are matched by (proto, orig_h, orig_p, resp_h, resp_p, ts).  Compared
exactly: the set of flows, community_id, sizes, bursts, orig_heads,
resp_heads, handshake; within 2 µs: ts and times.

Tolerated, as documented in docs/zeek.md ("Parity with the extractor"):
  * uid: Zeek's are random.
  * role flips: Zeek picks orig by its own rules (SYN/SYN-ACK reversal,
    likely_server_ports for connections without a SYN and for UDP); a flow
    that matches with orig and resp swapped and all signs and heads mirrored
    counts as a match and is reported as flipped.
  * counters, duration, closed, complete: they are snapshots taken when the
    evidence is published, and Zeek's TCP byte counts come from sequence
    numbers (retransmissions not counted twice, gaps counted).  They are
    reported, and compared only with --strict-counters.

Exit status 0 on parity, 1 otherwise; the differences are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXACT = ("community_id", "sizes", "bursts", "orig_heads", "resp_heads", "handshake")
CLOSE = ("times",)
LOOSE = ("orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "duration", "closed", "complete")
TS_TOLERANCE = 2e-6  # the extractor rounds times to 1 µs


def load(path: str) -> list[dict]:
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise SystemExit(f"{path}:{n}: not JSON: {e}") from e
    return out


def key(e: dict) -> tuple:
    return (e["proto"], e["orig_h"], int(e["orig_p"]), e["resp_h"], int(e["resp_p"]))


def flipped(e: dict) -> dict:
    m = dict(e)
    m["orig_h"], m["resp_h"] = e["resp_h"], e["orig_h"]
    m["orig_p"], m["resp_p"] = e["resp_p"], e["orig_p"]
    m["sizes"] = [-s for s in e["sizes"]]
    m["bursts"] = [-b for b in e["bursts"]]
    m["orig_heads"], m["resp_heads"] = e["resp_heads"], e["orig_heads"]
    m["orig_pkts"], m["resp_pkts"] = e.get("resp_pkts"), e.get("orig_pkts")
    m["orig_bytes"], m["resp_bytes"] = e.get("resp_bytes"), e.get("orig_bytes")
    m["handshake"] = False  # a flipped flow did not show orig's SYN first
    return m


def index(flows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for e in flows:
        out.setdefault(key(e), []).append(e)
    return out


def take(idx: dict[tuple, list[dict]], e: dict) -> dict | None:
    for cand in idx.get(key(e), []):
        if abs(float(cand["ts"]) - float(e["ts"])) <= TS_TOLERANCE:
            idx[key(e)].remove(cand)
            return cand
    return None


def compare(z: dict, x: dict, strict_counters: bool, was_flipped: bool) -> list[str]:
    diffs = []
    for f in EXACT:
        if f == "handshake" and was_flipped:
            continue
        if z.get(f) != x.get(f):
            diffs.append(f"{f}: zeek {z.get(f)!r} extractor {x.get(f)!r}")
    for f in CLOSE:
        a, b = z.get(f) or [], x.get(f) or []
        if len(a) != len(b) or any(abs(float(p) - float(q)) > TS_TOLERANCE for p, q in zip(a, b)):
            diffs.append(f"{f}: zeek {a!r} extractor {b!r}")
    if strict_counters:
        for f in LOOSE:
            if f in x and z.get(f) != x.get(f):
                diffs.append(f"{f}: zeek {z.get(f)!r} extractor {x.get(f)!r}")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zeek")
    ap.add_argument("extractor")
    ap.add_argument("--strict-counters", action="store_true")
    args = ap.parse_args()

    zeek, extractor = load(args.zeek), load(args.extractor)
    idx = index(extractor)
    failures, flips, loose = [], 0, 0
    for z in zeek:
        x = take(idx, z)
        was_flipped = False
        if x is None:
            x = take(idx, flipped(z))
            if x is not None:
                z, was_flipped = flipped(z), True
                flips += 1
        if x is None:
            failures.append(f"{key(z)} ts={z['ts']}: only in Zeek")
            continue
        diffs = compare(z, x, args.strict_counters, was_flipped)
        if diffs:
            failures.append(f"{key(z)} ts={z['ts']}: " + "; ".join(diffs))
        loose += sum(1 for f in LOOSE if f in x and z.get(f) != x.get(f))
    for rest in idx.values():
        for x in rest:
            failures.append(f"{key(x)} ts={x['ts']}: only in the extractor")

    for f in failures:
        print(f)
    print(
        f"{len(zeek)} Zeek flows, {len(extractor)} extractor flows, {len(failures)} mismatches, "
        f"{flips} role flips, {loose} differing snapshot counters (tolerated)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
