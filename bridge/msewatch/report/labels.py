"""Ground truth for the report: confusion matrix and per-client-pair recall.

Uses `msewatch.evaluate` (the definitions of `msewatch eval`) when it is importable, so the
report and the evaluation agree; falls back to a small matcher of its own otherwise.

Flows are matched to label rows by (pcap, 5-tuple), also in reversed orientation. Verdicts
read from JSON lines carry no pcap: they take the pcap of the label row with their 5-tuple.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .inputs import Key, ReportError, flow_key

P2P_CLASSES = ("bt_mse", "bt_plain", "utp", "dht", "tracker", "lsd")


@dataclass
class Truth:
    """What the report shows about ground truth."""

    engine: str  # "msewatch.evaluate" or "built-in"
    confusion_cols: list[str]
    confusion: list[tuple[str, list[int]]]  # (true class, counts per column)
    pairs: list[dict]  # class, client, server, flows, detected/recall or false_positive/fp_rate
    hosts: dict | None
    unknown_share: float | None
    truth_by_uid: dict[str, str] = field(default_factory=dict)  # uid -> true class (for flow cards)
    misses: set[str] = field(default_factory=set)  # uids of P2P flows not labelled p2p_likely
    false_positives: set[str] = field(default_factory=set)


def _read_rows(path: str, needed: tuple[str, ...]) -> list[dict]:
    try:
        with open(path, newline="") as f:
            rd = csv.DictReader(f)
            missing = [c for c in needed if c not in (rd.fieldnames or [])]
            if missing:
                raise ReportError(f"{path}: missing column(s) {missing}")
            return list(rd)
    except OSError as e:
        raise ReportError(f"{path}: cannot read: {e.strerror}") from None


def _row_key(r: dict) -> Key:
    return (r["proto"].lower(), r["orig_h"], int(r["orig_p"]), r["resp_h"], int(r["resp_p"]))


def _truth(r: dict) -> str | None:
    if r["label"] == "p2p":
        return r["protocol"]
    if r["label"] == "normal":
        return "normal"
    return None


def assign_pcaps(flows: list[dict], rows: list[dict]) -> None:
    """Give flows without a `pcap` the pcap of the label row with their 5-tuple (either way)."""
    by_key: dict[Key, str] = {}
    for r in rows:
        k = _row_key(r)
        by_key.setdefault(k, r["pcap"])
        by_key.setdefault((k[0], k[3], k[4], k[1], k[2]), r["pcap"])
    for f in flows:
        if not f.get("pcap"):
            f["_pcap"] = by_key.get(flow_key(f), "")


def _pcap(f: dict) -> str:
    return f.get("pcap") or f.get("_pcap", "")


def compute(flows: list[dict], hosts: list[dict], labels_path: str, hosts_path: str | None) -> Truth:
    rows = _read_rows(labels_path, ("pcap", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "label", "protocol"))
    assign_pcaps(flows, rows)
    try:
        return _with_evaluate(flows, hosts, labels_path, hosts_path)
    except ImportError:
        return _builtin(flows, rows, hosts, hosts_path)


def _with_evaluate(flows: list[dict], hosts: list[dict], labels_path: str, hosts_path: str | None) -> Truth:
    from .. import evaluate as ev  # raises ImportError where the evaluator is not installed

    try:
        labels = ev.load_labels(labels_path)
        roles = ev.load_hosts(hosts_path) if hosts_path else []
    except ev.EvalError as e:
        raise ReportError(str(e)) from None
    preds = []
    uid_of: dict[tuple, list[str]] = defaultdict(list)
    for f in flows:
        p = ev.FlowPrediction(
            _pcap(f), f["proto"], f["orig_h"], int(f["orig_p"]), f["resp_h"], int(f["resp_p"]), f["label"],
            f.get("protocol"), f.get("decided_at_packet"), max(0.0, f.get("decided_at", f["ts"]) - f["ts"]),
            tuple(f.get("reasons", ())),
        )
        preds.append(p)
        uid_of[(p.pcap, p.key)].append(f["uid"])
    host_preds: dict[tuple[str, str], object] = {}
    for h in hosts:
        k = (h.get("pcap", ""), h["host"])
        prev = host_preds.get(k)
        ever = h["label"] == ev.P2P_HOST or (prev is not None and prev.ever_p2p_host)
        host_preds[k] = ev.HostPrediction(k[0], h["host"], h["label"], ever, tuple(h.get("reasons", ())))
    scope = sorted({p.pcap for p in preds if p.pcap})
    rep = ev.evaluate(preds, labels, list(host_preds.values()), roles, pcaps=scope)
    used = [c for c in ev.PRED_COLUMNS if any(rep.confusion[t][c] for t in rep.confusion)]
    confusion = [(t, [rep.confusion[t][c] for c in used]) for t in rep.confusion if rep.classes[t].flows]
    truth_by_uid: dict[str, str] = {}
    index = {(r.pcap, r.key): r for r in labels}
    for (pcap, key), uids in uid_of.items():
        r = index.get((pcap, key)) or index.get((pcap, (key[0], key[3], key[4], key[1], key[2])))
        if r is not None and r.truth is not None:
            for u in uids:
                truth_by_uid[u] = r.truth
    misses, fps = _misses(flows, truth_by_uid)
    return Truth(
        "msewatch.evaluate", [c.replace("p2p_likely/", "p2p/") for c in used], confusion, list(rep.client_pairs),
        rep.hosts if rep.hosts.get("evaluated") else None, rep.unknown_share, truth_by_uid, misses, fps,
    )


def _misses(flows: list[dict], truth_by_uid: dict[str, str]) -> tuple[set[str], set[str]]:
    misses, fps = set(), set()
    for f in flows:
        t = truth_by_uid.get(f["uid"])
        if t is None:
            continue
        if t != "normal" and f["label"] != "p2p_likely":
            misses.add(f["uid"])
        elif t == "normal" and f["label"] == "p2p_likely":
            fps.add(f["uid"])
    return misses, fps


def _builtin(flows: list[dict], rows: list[dict], hosts: list[dict], hosts_path: str | None) -> Truth:
    """Simple matcher: truth class x predicted label (p2p guesses split by protocol)."""
    index: dict[tuple[str, Key], dict] = {}
    for r in rows:
        index.setdefault((r["pcap"], _row_key(r)), r)
    conf: dict[str, Counter] = defaultdict(Counter)
    pairs: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    truth_by_uid: dict[str, str] = {}
    used: set[tuple] = set()
    unknown = matched = 0
    for f in flows:
        k = flow_key(f)
        pc = _pcap(f)
        r = index.get((pc, k)) or index.get((pc, (k[0], k[3], k[4], k[1], k[2])))
        if r is None or _truth(r) is None:
            continue
        used.add((r["pcap"], _row_key(r)))
        t = _truth(r)
        truth_by_uid[f["uid"]] = t
        col = f"p2p/{f.get('protocol') or '-'}" if f["label"] == "p2p_likely" else f["label"]
        conf[t][col] += 1
        matched += 1
        unknown += f["label"] == "unknown"
        pr = pairs[(t, r.get("client", ""), r.get("server", ""))]
        pr["flows"] += 1
        if t == "normal":
            pr["false_positive"] += f["label"] == "p2p_likely"
        else:
            pr["detected"] += f["label"] == "p2p_likely"
    scope = {_pcap(f) for f in flows}
    for key, r in index.items():
        t = _truth(r)
        if key not in used and t is not None and r["pcap"] in scope:
            conf[t]["unseen"] += 1
            pairs[(t, r.get("client", ""), r.get("server", ""))]["flows"] += 1
    cols = sorted({c for cnt in conf.values() for c in cnt})
    confusion = [(t, [conf[t][c] for c in cols]) for t in sorted(conf)]
    out_pairs = []
    for (t, cl, sv), c in sorted(pairs.items()):
        d = {"class": t, "client": cl, "server": sv, "flows": c["flows"]}
        if t == "normal":
            d |= {"false_positive": c["false_positive"], "fp_rate": c["false_positive"] / c["flows"]}
        else:
            d |= {"detected": c["detected"], "recall": c["detected"] / c["flows"]}
        out_pairs.append(d)
    misses, fps = _misses(flows, truth_by_uid)
    return Truth("built-in", cols, confusion, out_pairs, None, unknown / matched if matched else None,
                 truth_by_uid, misses, fps)
