#!/usr/bin/env python3
"""End-to-end parity of the Zeek path with the pcap path, capture by capture.

    .venv/bin/python tools/zeek_parity.py                      # every capture of tests/data/corpus
    .venv/bin/python tools/zeek_parity.py PCAP ... [--jobs 2] [--keep DIR] [--markdown]

For each capture it runs

  * the pcap path: `msewatch evidence PCAP` and `msewatch analyze PCAP`;
  * the Zeek path: `msewatch run` as the bridge and
    `zeek -C -r PCAP zeek-scripts zeek-scripts/wait-for-bridge.zeek` (pcap mode: Zeek waits
    for the bridge and exits once every flow has its verdict), with
    tests/zeek/Scripts/dump-evidence.zeek printing every flow_evidence Zeek publishes;

and compares, per connection (matched on proto, 5-tuple and start time; uids differ):

  evidence   sizes, times (within 2 us), bursts, heads, handshake and community_id: the part
             of the evidence the detectors read. Any difference is a parity failure.
  counters   orig/resp packets and bytes, duration, closed: snapshots taken when the evidence
             is published, which can differ for reasons docs/zeek.md lists. Reported.
  flow       the flow label (and protocol) the bridge sent Zeek for the connection vs. the
             label `msewatch analyze` gives it.
  host       each host's last host label from the bridge vs. from `msewatch analyze`.
  logged     msewatch.log holds the bridge's flow verdicts (once each), and conn.log's
             `msewatch` field is set on every TCP/UDP connection.

It prints one row per capture and a total, and exits 1 when evidence, flow labels or the
logs disagree anywhere (counters and host labels are reported; --strict fails on them too).
Needs `zeek` (PATH or /opt/zeek/bin) and the repository's venv (`make setup`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "corpus"
PACKAGE = ROOT / "zeek-scripts"
DUMP = ROOT / "tests" / "zeek" / "Scripts" / "dump-evidence.zeek"
TIME_TOLERANCE = 2e-6  # the extractor rounds times to 1 us

EXACT = ("community_id", "sizes", "bursts", "orig_heads", "resp_heads", "handshake")
COUNTERS = ("orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "duration", "closed")


def find_zeek() -> str | None:
    return shutil.which("zeek") or ("/opt/zeek/bin/zeek" if os.access("/opt/zeek/bin/zeek", os.X_OK) else None)


def find_msewatch() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "msewatch"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "msewatch"]


# --- matching and comparing -------------------------------------------------------------------


def flow_key(d: dict) -> tuple:
    return (d["proto"], d["orig_h"], int(d["orig_p"]), d["resp_h"], int(d["resp_p"]), round(float(d["ts"]), 5))


def flipped_key(d: dict) -> tuple:
    return (d["proto"], d["resp_h"], int(d["resp_p"]), d["orig_h"], int(d["orig_p"]), round(float(d["ts"]), 5))


def mirrored(e: dict) -> dict:
    """The evidence as seen with orig and resp swapped."""
    m = dict(e)
    m["orig_h"], m["resp_h"] = e["resp_h"], e["orig_h"]
    m["orig_p"], m["resp_p"] = e["resp_p"], e["orig_p"]
    m["sizes"] = [-s for s in e["sizes"]]
    m["bursts"] = [-b for b in e["bursts"]]
    m["orig_heads"], m["resp_heads"] = e["resp_heads"], e["orig_heads"]
    for a, b in (("orig_pkts", "resp_pkts"), ("orig_bytes", "resp_bytes")):
        m[a], m[b] = e.get(b), e.get(a)
    return m


def evidence_diffs(z: dict, x: dict, was_flipped: bool) -> list[str]:
    out = []
    for f in EXACT:
        if f == "handshake" and was_flipped:
            continue
        if z.get(f) != x.get(f):
            out.append(f)
    a, b = z.get("times") or [], x.get("times") or []
    if len(a) != len(b) or any(abs(float(p) - float(q)) > TIME_TOLERANCE for p, q in zip(a, b)):
        out.append("times")
    return out


def counter_diffs(z: dict, x: dict) -> list[str]:
    out = []
    for f in COUNTERS:
        if f not in x:
            continue
        if f == "duration":
            if abs(float(z[f]) - float(x[f])) > TIME_TOLERANCE:
                out.append(f)
        elif z.get(f) != x.get(f):
            out.append(f)
    return out


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def read_zeek_log(path: Path) -> list[dict]:
    """A Zeek ASCII log as dicts (the #fields header names the columns)."""
    if not path.exists():
        return []
    names: list[str] = []
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            names = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(names, line.split("\t"))))
    return rows


@dataclass
class Result:
    capture: str
    zeek_flows: int = 0
    pcap_flows: int = 0
    matched: int = 0
    flips: int = 0
    evidence_equal: int = 0
    counters_equal: int = 0
    flows_labelled: int = 0
    flow_labels_equal: int = 0
    hosts: int = 0
    host_labels_equal: int = 0
    conn_tcp_udp: int = 0
    conn_labelled: int = 0
    logged_ok: bool = True
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counter_fields: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def failed(self, strict: bool) -> bool:
        if self.problems:
            return True
        return strict and (self.counters_equal != self.matched or self.host_labels_equal != self.hosts)


def compare(res: Result, zeek_ev: list[dict], pcap_ev: list[dict], bridge: list[dict],
            analyze: list[dict], msewatch_log: list[dict], conn_log: list[dict]) -> None:
    res.zeek_flows, res.pcap_flows = len(zeek_ev), len(pcap_ev)
    pcap_by_key: dict[tuple, dict] = {}
    for x in pcap_ev:
        pcap_by_key.setdefault(flow_key(x), x)
    # Zeek uid -> the pcap path's key of the same connection
    uid_to_key: dict[str, tuple] = {}
    taken: set[tuple] = set()
    for z in zeek_ev:
        k, was_flipped, zz = flow_key(z), False, z
        if k not in pcap_by_key or k in taken:
            k2 = flipped_key(z)
            if k2 in pcap_by_key and k2 not in taken:
                k, was_flipped, zz = k2, True, mirrored(z)
                res.flips += 1
            else:
                res.problems.append(f"{z['uid']} {flow_key(z)}: only in Zeek")
                continue
        taken.add(k)
        uid_to_key[z["uid"]] = k
        res.matched += 1
        x = pcap_by_key[k]
        diffs = evidence_diffs(zz, x, was_flipped)
        if diffs:
            res.problems.append(f"{z['uid']} {k}: evidence differs in {', '.join(diffs)}")
        else:
            res.evidence_equal += 1
        cdiffs = counter_diffs(zz, x)
        for f in cdiffs:
            res.counter_fields[f] = res.counter_fields.get(f, 0) + 1
        if not cdiffs:
            res.counters_equal += 1
    for k in pcap_by_key.keys() - taken:
        res.problems.append(f"{k}: only in the pcap path")

    # flow labels: what the bridge sent Zeek vs what `msewatch analyze` says
    analyze_flows = {flow_key(v): v for v in analyze if v.get("type") == "flow"}
    bridge_flows = [v for v in bridge if v.get("type") == "flow"]
    seen_uids = set()
    for v in bridge_flows:
        if v["uid"] in seen_uids:
            continue
        seen_uids.add(v["uid"])
        k = uid_to_key.get(v["uid"])
        if k is None:
            res.problems.append(f"{v['uid']}: the bridge decided a flow Zeek did not publish")
            continue
        res.flows_labelled += 1
        a = analyze_flows.get(k)
        if a is None:
            res.problems.append(f"{v['uid']} {k}: no verdict from msewatch analyze")
        elif (a["label"], a.get("protocol")) == (v["label"], v.get("protocol")):
            res.flow_labels_equal += 1
        else:
            res.problems.append(
                f"{v['uid']} {k}: flow label {v['label']}/{v.get('protocol')} via Zeek, "
                f"{a['label']}/{a.get('protocol')} via pcap")
    if res.flows_labelled != res.matched:
        res.problems.append(f"{res.matched - res.flows_labelled} flow(s) without a verdict from the bridge")

    # host labels: each host's last verdict
    def last_host_labels(vs: list[dict]) -> dict[str, str]:
        out: dict[str, str] = {}
        for v in vs:
            if v.get("type") == "host":
                out[v["host"]] = v["label"]
        return out

    # The bridge sends a host verdict when a host's label changes; `msewatch analyze` also
    # reports every host at the end of the input. A host the bridge never reported still has
    # the label every host starts with: unknown.
    hz, hp = last_host_labels(bridge), last_host_labels(analyze)
    res.hosts = len(hz.keys() | hp.keys())
    for h in sorted(hz.keys() | hp.keys()):
        if hz.get(h, "unknown") == hp.get(h, "unknown"):
            res.host_labels_equal += 1
        else:
            res.notes.append(f"host {h}: {hz.get(h)} via Zeek, {hp.get(h)} via pcap")

    # what Zeek logged
    logged = [r for r in msewatch_log if r.get("kind") == "flow"]
    logged_uids = [r["uid"] for r in logged]
    if len(logged_uids) != len(set(logged_uids)):
        res.logged_ok = False
        res.problems.append("msewatch.log has a flow verdict twice")
    bridge_labels = {v["uid"]: v["label"] for v in bridge_flows}
    for r in logged:
        if bridge_labels.get(r["uid"]) != r["label"]:
            res.logged_ok = False
            res.problems.append(f"{r['uid']}: msewatch.log says {r['label']}, the bridge sent {bridge_labels.get(r['uid'])}")
    if len(set(logged_uids)) != len(bridge_labels):
        res.logged_ok = False
        res.problems.append(f"msewatch.log has {len(set(logged_uids))} flow verdicts, the bridge sent {len(bridge_labels)}")
    conns = [r for r in conn_log if r.get("proto") in ("tcp", "udp")]
    res.conn_tcp_udp = len(conns)
    res.conn_labelled = sum(1 for r in conns if r.get("msewatch", "-") not in ("-", ""))
    if res.conn_labelled != res.conn_tcp_udp:
        res.logged_ok = False
        res.problems.append(f"{res.conn_tcp_udp - res.conn_labelled} TCP/UDP connection(s) without msewatch in conn.log")


# --- running one capture -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_capture(pcap: Path, work: Path, zeek: str, timeout: float) -> Result:
    t0 = time.monotonic()
    res = Result(pcap.name)
    work.mkdir(parents=True, exist_ok=True)
    msewatch = find_msewatch()
    env = dict(os.environ, PATH=f"{Path(zeek).parent}:{os.environ.get('PATH', '')}")

    def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout, **kw)

    for what, cmd in (("evidence", msewatch + ["evidence", str(pcap), "-o", "pcap-evidence.jsonl"]),
                      ("analyze", msewatch + ["analyze", str(pcap), "-q", "--no-progress", "-o", "analyze.jsonl"])):
        p = run(cmd)
        if p.returncode != 0:
            res.problems.append(f"msewatch {what} failed: {p.stderr.strip()[-500:]}")
            return res

    zdir = work / "zeek"
    zdir.mkdir(exist_ok=True)
    for attempt in range(3):
        port = free_port()
        (work / "bridge.yaml").write_text(
            "zeek:\n"
            f"  endpoints: [\"ws://127.0.0.1:{port}/v1/messages/json\"]\n"
            "  reconnect: {initial: 0.1, max: 0.5}\n"
            "  full_verdicts: all\n"  # msewatch.log is compared flow by flow
            "metrics: {enabled: false}\n"
            "outputs: {verdicts_jsonl: bridge-verdicts.jsonl}\n")
        (work / "bridge-verdicts.jsonl").unlink(missing_ok=True)
        with open(work / "bridge.log", "w") as blog:
            bridge = subprocess.Popen(msewatch + ["run", "-c", "bridge.yaml"], cwd=work, env=env,
                                      stdout=blog, stderr=subprocess.STDOUT)
        try:
            with open(zdir / "evidence.jsonl", "w") as out, open(zdir / "stderr", "w") as err:
                z = subprocess.run([zeek, "-C", "-r", str(pcap), str(PACKAGE), str(PACKAGE / "wait-for-bridge.zeek"),
                                    str(DUMP), f"MSEWatch::listen_port={port}/tcp"],
                                   cwd=zdir, env=env, stdout=out, stderr=err, timeout=timeout)
        except subprocess.TimeoutExpired:
            res.problems.append(f"zeek did not finish within {timeout:.0f}s (a flow without a verdict?)")
            return res
        finally:
            bridge.send_signal(signal.SIGTERM)
            try:
                bridge.wait(30)
            except subprocess.TimeoutExpired:
                bridge.kill()
                bridge.wait()
        if z.returncode == 0:
            break
        errtext = (zdir / "stderr").read_text()
        if "cannot listen" not in errtext or attempt == 2:
            res.problems.append(f"zeek exited {z.returncode}: {errtext.strip()[-500:]}")
            return res  # else: the port was taken meanwhile; try another

    compare(res,
            read_jsonl(zdir / "evidence.jsonl"), read_jsonl(work / "pcap-evidence.jsonl"),
            read_jsonl(work / "bridge-verdicts.jsonl"), read_jsonl(work / "analyze.jsonl"),
            read_zeek_log(zdir / "msewatch.log"), read_zeek_log(zdir / "conn.log"))
    res.seconds = time.monotonic() - t0
    return res


# --- the report ---------------------------------------------------------------------------------


def frac(a: int, b: int) -> str:
    return f"{a}/{b}"


def table(results: list[Result], markdown: bool) -> str:
    head = ["capture", "flows Zeek/pcap", "evidence =", "counters =", "flow labels =", "host labels =",
            "conn.log labelled", "msewatch.log"]
    rows = []
    tot = Result("total")
    for r in results:
        rows.append([r.capture, f"{r.zeek_flows}/{r.pcap_flows}", frac(r.evidence_equal, r.matched),
                     frac(r.counters_equal, r.matched), frac(r.flow_labels_equal, r.flows_labelled),
                     frac(r.host_labels_equal, r.hosts), frac(r.conn_labelled, r.conn_tcp_udp),
                     "ok" if r.logged_ok and not r.problems else "see below"])
        for f in ("zeek_flows", "pcap_flows", "matched", "evidence_equal", "counters_equal", "flows_labelled",
                  "flow_labels_equal", "hosts", "host_labels_equal", "conn_tcp_udp", "conn_labelled"):
            setattr(tot, f, getattr(tot, f) + getattr(r, f))
    rows.append([f"**total** ({len(results)} captures)" if markdown else f"total ({len(results)} captures)",
                 f"{tot.zeek_flows}/{tot.pcap_flows}", frac(tot.evidence_equal, tot.matched),
                 frac(tot.counters_equal, tot.matched), frac(tot.flow_labels_equal, tot.flows_labelled),
                 frac(tot.host_labels_equal, tot.hosts), frac(tot.conn_labelled, tot.conn_tcp_udp),
                 "ok" if all(r.logged_ok and not r.problems for r in results) else "see below"])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x[i])) for x in [head] + rows) for i in range(len(head))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pcap", nargs="*", type=Path, help="captures (default: every tests/data/corpus/*.pcap)")
    ap.add_argument("--jobs", type=int, default=2, help="captures run at once (default 2)")
    ap.add_argument("--keep", type=Path, help="keep every run's files under this directory")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per step (default 600)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--strict", action="store_true", help="fail on counter and host label differences too")
    args = ap.parse_args(argv)

    zeek = find_zeek()
    if zeek is None:
        print("zeek_parity: no zeek on PATH or at /opt/zeek/bin/zeek", file=sys.stderr)
        return 2
    pcaps = args.pcap or sorted(CORPUS.glob("*.pcap"))
    missing = [p for p in pcaps if not p.is_file()]
    if missing or not pcaps:
        print(f"zeek_parity: no such capture: {missing[0] if missing else CORPUS / '*.pcap'}", file=sys.stderr)
        return 2
    base = args.keep or Path(tempfile.mkdtemp(prefix="zeek-parity-"))
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = [pool.submit(run_capture, p.resolve(), base / p.name, zeek, args.timeout) for p in pcaps]
            results = [f.result() for f in futures]
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)

    print(table(results, args.markdown))
    counters: dict[str, int] = {}
    for r in results:
        for f, n in r.counter_fields.items():
            counters[f] = counters.get(f, 0) + n
    if counters:
        print("\ncounter differences by field: " + ", ".join(f"{f} {n}" for f, n in sorted(counters.items())))
    for r in results:
        for line in r.problems[:20] + r.notes[:20]:
            print(f"{r.capture}: {line}")
    return 1 if any(r.failed(args.strict) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
