#!/usr/bin/env python3
"""Check Zeek's flow_evidence for make_pcap.py's capture against values derived
by hand from the packets, for given budgets.

usage: check_evidence.py EVIDENCE.jsonl [--max-packets N] [--max-bursts K]
                         [--head-bytes H] [--udp-heads U] [--no-payloadless]

The budget rules are the contract's (docs/evidence.md): a payload-bearing packet
is recorded unless the flow is older than max_age or the packet would open
direction run K+1; recording N packets, or meeting such a packet, spends the
budget and publishes at once (so `closed` is then false and the counters are not
final).  Otherwise the flow is published at its end, with final counters.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_pcap  # noqa: E402


def expected(flow, n: int, k: int, h: int, udp_heads: int) -> dict:
    sizes: list[int] = []
    times: list[float] = []
    bursts: list[int] = []
    heads = {True: [], False: []}
    per_dir_heads = udp_heads if flow["proto"] == "udp" else 1
    spent = False
    for dt, from_orig, _flags, payload in flow["packets"]:
        if not payload:
            continue
        size = len(payload) if from_orig else -len(payload)
        if bursts and (bursts[-1] > 0) != from_orig and len(bursts) >= k:
            spent = True
            break
        sizes.append(size)
        times.append(dt)
        if bursts and (bursts[-1] > 0) == from_orig:
            bursts[-1] += size
        else:
            bursts.append(size)
        if len(heads[from_orig]) < per_dir_heads:
            heads[from_orig].append(payload[:h].hex())
        if len(sizes) >= n:
            spent = True
            break
    exp = {
        "proto": flow["proto"],
        "orig_h": flow["orig"][0],
        "orig_p": flow["orig"][1],
        "resp_h": flow["resp"][0],
        "resp_p": flow["resp"][1],
        "ts": flow["start"],
        "sizes": sizes,
        "times": times,
        "bursts": bursts,
        "orig_heads": heads[True],
        "resp_heads": heads[False],
        "complete": True,
        "version": 2,  # evidence version 2 (packed; dump-evidence.zeek unpacks it)
    }
    if flow["proto"] == "tcp":
        flags = [(o, f) for _, o, f, _ in flow["packets"]]
        exp["handshake"] = (True, "S") in flags and (False, "SA") in flags
    else:
        exp["handshake"] = False
    if not spent:
        pk = flow["packets"][: published_at(flow) + 1]
        exp["orig_pkts"] = sum(1 for p in pk if p[1])
        exp["resp_pkts"] = sum(1 for p in pk if not p[1])
        exp["orig_bytes"] = sum(len(p[3]) for p in pk if p[1])
        exp["resp_bytes"] = sum(len(p[3]) for p in pk if not p[1])
        exp["duration"] = pk[-1][0]
        exp["closed"] = flow["proto"] == "tcp" and any(
            f and ("F" in f or "R" in f) for _, _, f, _ in pk
        )
    else:
        exp["closed"] = False
    return exp


def published_at(flow) -> int:
    """Index of the packet at which a flow whose budget was not spent is
    published: the one that closes a TCP connection (the second FIN, or a RST:
    Zeek's connection_finished / connection_reset / connection_rejected, the
    extractor's close), else the last packet (published at the end)."""
    fins: set[bool] = set()
    for i, (_dt, from_orig, flags, _payload) in enumerate(flow["packets"]):
        if flags and "F" in flags:
            fins.add(from_orig)
        if len(fins) == 2 or (flags and "R" in flags):
            return i
    return len(flow["packets"]) - 1


def community_id(flow) -> str | None:
    try:
        import communityid
    except ImportError:
        return None
    cid = communityid.CommunityID()
    (oh, op), (rh, rp) = flow["orig"], flow["resp"]
    make = communityid.FlowTuple.make_tcp if flow["proto"] == "tcp" else communityid.FlowTuple.make_udp
    return cid.calc(make(oh, rh, op, rp))


def close(a, b, tol=1e-5) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    return abs(a - b) <= tol


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("evidence")
    ap.add_argument("--max-packets", type=int, default=32)
    ap.add_argument("--max-bursts", type=int, default=8)
    ap.add_argument("--head-bytes", type=int, default=256)
    ap.add_argument("--udp-heads", type=int, default=4)
    ap.add_argument("--no-payloadless", action="store_true")
    args = ap.parse_args()

    got = [json.loads(line) for line in Path(args.evidence).read_text().splitlines() if line.strip()]
    by_key = {(e["proto"], e["orig_h"], e["orig_p"], e["resp_h"], e["resp_p"]): e for e in got}
    if len(by_key) != len(got):
        print(f"a flow was published more than once: {len(got)} events, {len(by_key)} flows")
        return 1

    problems = []
    flows = [
        f
        for f in make_pcap.FLOWS
        if not (args.no_payloadless and not any(p[3] for p in f["packets"]))
    ]
    if len(got) != len(flows):
        problems.append(f"expected {len(flows)} flows, got {len(got)}: {sorted(by_key)}")
    for flow in flows:
        exp = expected(flow, args.max_packets, args.max_bursts, args.head_bytes, args.udp_heads)
        key = (exp["proto"], exp["orig_h"], exp["orig_p"], exp["resp_h"], exp["resp_p"])
        ev = by_key.get(key)
        if ev is None:
            problems.append(f"{key}: not published")
            continue
        for name, want in exp.items():
            if name == "version" and "version" not in ev:
                continue  # `msewatch evidence` output has no version field
            have = ev.get(name)
            ok = close(have, want) if name in ("ts", "times", "duration") else have == want
            if not ok:
                problems.append(f"{key} {name}: want {want!r}, have {have!r}")
        if len(ev["times"]) != len(ev["sizes"]):
            problems.append(f"{key}: times and sizes differ in length")
        cid = community_id(flow)
        if cid and ev["community_id"] != cid:
            problems.append(f"{key} community_id: want {cid}, have {ev['community_id']}")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
