"""Ground truth for the report: confusion matrix and per-client-pair recall.

Uses `msewatch.evaluate` (the definitions of `msewatch eval`), so the report and the
evaluation agree.

Flows are matched to label rows by (pcap, 5-tuple), also in reversed orientation. Verdicts
read from JSON lines carry no pcap: they take the pcap of the label row with their 5-tuple.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .. import evaluate as ev
from .inputs import Key, ReportError, flow_key


@dataclass
class Truth:
    """What the report shows about ground truth."""

    engine: str  # what computed it: "msewatch.evaluate"
    confusion_cols: list[str]
    confusion: list[tuple[str, list[int]]]  # (true class, counts per column)
    pairs: list[dict]  # class, client, server, flows, detected/recall or false_positive/fp_rate
    hosts: dict | None
    unknown_share: float | None
    truth_by_uid: dict[str, str] = field(default_factory=dict)  # uid -> true class (for flow cards)
    misses: set[str] = field(default_factory=set)  # uids of P2P flows not labelled p2p_likely
    false_positives: set[str] = field(default_factory=set)


def assign_pcaps(flows: list[dict], rows: list) -> None:
    """Give flows without a `pcap` the pcap of the label row with their 5-tuple (either way)."""
    by_key: dict[Key, str] = {}
    for r in rows:
        k = r.key
        by_key.setdefault(k, r.pcap)
        by_key.setdefault((k[0], k[3], k[4], k[1], k[2]), r.pcap)
    for f in flows:
        if not f.get("pcap"):
            f["_pcap"] = by_key.get(flow_key(f), "")


def _pcap(f: dict) -> str:
    return f.get("pcap") or f.get("_pcap", "")


def compute(flows: list[dict], hosts: list[dict], labels_path: str, hosts_path: str | None) -> Truth:
    try:
        labels = ev.load_labels(labels_path)
        roles = ev.load_hosts(hosts_path) if hosts_path else []
    except ev.EvalError as e:
        raise ReportError(str(e)) from None
    assign_pcaps(flows, labels)
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
