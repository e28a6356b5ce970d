#!/usr/bin/env python3
"""Apply the capture-derived label refinements (pcapflows.refine_protocol,
hosts_in_flows) to an existing corpus directory without regenerating it.

    tools/corpus/refine_labels.py tests/data/corpus
"""
import csv
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pcapflows import hosts_in_flows, read_flows, refine_protocol  # noqa: E402


def main(d: str) -> int:
    with open(os.path.join(d, "labels.csv")) as f:
        rd = csv.reader(f)
        header, rows = next(rd), list(rd)
    flows = {}
    for pcap in sorted({r[0] for r in rows}):
        for fl in read_flows(os.path.join(d, pcap)):
            flows[(pcap, fl.proto, fl.orig_h, str(fl.orig_p), fl.resp_h, str(fl.resp_p))] = fl
    changed = 0
    for r in rows:
        fl = flows.get(tuple(r[:6]))
        if fl is not None and r[7] != (new := refine_protocol(r[7], fl)):
            r[7], changed = new, changed + 1
    with open(os.path.join(d, "labels.csv"), "w", newline="") as f:
        csv.writer(f).writerows([header] + rows)
    with open(os.path.join(d, "hosts.csv")) as f:
        rd = csv.reader(f)
        hheader, hosts = next(rd), list(rd)
    kept = hosts_in_flows(hosts, rows)
    with open(os.path.join(d, "hosts.csv"), "w", newline="") as f:
        csv.writer(f).writerows([hheader] + kept)
    _rehash_manifest(d)
    print(f"{changed} flow labels refined, {len(hosts) - len(kept)} hosts without flows dropped")
    return 0


def _rehash_manifest(d: str) -> None:
    """Keep MANIFEST's sha256 lines true for the files just rewritten."""
    path = os.path.join(d, "MANIFEST")
    if not os.path.exists(path):
        return
    out = []
    for line in open(path).read().splitlines():
        if line.startswith("sha256 ") and line.split()[-1] in ("labels.csv", "hosts.csv"):
            fn = line.split()[-1]
            with open(os.path.join(d, fn), "rb") as f:
                line = f"sha256 {hashlib.sha256(f.read()).hexdigest()}  {fn}"
        out.append(line)
    if "refined tools/corpus/refine_labels.py" not in out:
        out.insert(4, "refined tools/corpus/refine_labels.py")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
