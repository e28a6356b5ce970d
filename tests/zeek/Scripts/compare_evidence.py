#!/usr/bin/env python3
"""Parity between Zeek's evidence and the offline extractor's on one pcap.

usage: compare_evidence.py ZEEK.jsonl EXTRACTOR.jsonl [--strict-counters]

ZEEK.jsonl comes from dump-evidence.zeek, EXTRACTOR.jsonl from
`msewatch evidence PCAP`; both hold one JSON object per flow with the field
names of docs/evidence.md (ports as numbers, heads as hex).

Flows are matched by (proto, orig_h, orig_p, resp_h, resp_p, ts); a flow that
matches with orig and resp swapped (and signs and heads mirrored) counts as a
role flip.  The comparison is tools/zeek_parity.py's: exactly equal
community_id, sizes, bursts, heads and handshake, times within 2 us; the
counters (packets, bytes, duration, closed) are snapshots whose known
differences docs/zeek.md ("Parity") lists: reported, and compared only with
--strict-counters.

Exit status 0 on parity, 1 otherwise; the differences are printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
from zeek_parity import (  # noqa: E402
    counter_diffs,
    evidence_diffs,
    flipped_key,
    flow_key,
    mirrored,
    read_jsonl,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zeek")
    ap.add_argument("extractor")
    ap.add_argument("--strict-counters", action="store_true")
    args = ap.parse_args()

    zeek, extractor = read_jsonl(Path(args.zeek)), read_jsonl(Path(args.extractor))
    by_key = {flow_key(x): x for x in extractor}
    failures, flips, counters = [], 0, 0
    taken = set()
    for z in zeek:
        k, was_flipped = flow_key(z), False
        if k not in by_key or k in taken:
            if flipped_key(z) in by_key and flipped_key(z) not in taken:
                k, z, was_flipped = flipped_key(z), mirrored(z), True
                flips += 1
            else:
                failures.append(f"{flow_key(z)}: only in Zeek")
                continue
        taken.add(k)
        diffs = evidence_diffs(z, by_key[k], was_flipped)
        cdiffs = counter_diffs(z, by_key[k])
        counters += bool(cdiffs)
        if args.strict_counters:
            diffs += cdiffs
        if diffs:
            failures.append(f"{k}: " + "; ".join(f"{f}: zeek {z.get(f)!r} extractor {by_key[k].get(f)!r}" for f in diffs))
    for k in by_key.keys() - taken:
        failures.append(f"{k}: only in the extractor")

    for f in failures:
        print(f)
    print(
        f"{len(zeek)} Zeek flows, {len(extractor)} extractor flows, {len(failures)} mismatches, "
        f"{flips} role flips, {counters} flows with differing snapshot counters (tolerated)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
