"""`msewatch eval`: accuracy of the engine on a labelled pcap corpus (docs/evaluation.md).

Three steps, each usable on its own:
- `predict_pcap` runs a fresh Engine on one pcap (every scenario is its own world: no host
  or peer-cache state leaks from one capture into the next) and turns its verdicts into
  `FlowPrediction`/`HostPrediction` records;
- `evaluate` is pure: it matches predictions to label rows by (pcap, 5-tuple), also in the
  reversed orientation, and computes the metrics. tools/compare_ndpi.py feeds it nDPI's
  results through the same function, so both columns of the comparison mean the same thing;
- `report_markdown` / `EvalReport.to_dict` format the result.

Definitions (docs/evaluation.md repeats them):
- A flow of a P2P class is *detected* when labelled p2p_likely, whatever the protocol guess;
  the guess is scored separately (`guess_accuracy` = detected with the right guess / detected).
- precision(c) for a P2P class = of the flows predicted p2p_likely with guess c, the share that
  are labelled P2P (detection-level, like recall). For `normal`: of the flows predicted
  normal_likely, the share labelled normal; recall(normal) = normal flows labelled normal_likely.
- FP rate = negative flows labelled p2p_likely / all negative flows.
- Every engine flow is one instance: if the engine splits a 5-tuple in two (port reuse, idle
  timeout), both pieces carry that row's label. A label row the engine never reported is
  counted in the `unseen` column (a miss for a P2P class, never a false positive).
- Flows with no label row, or with label `unlabeled`, are listed, never counted.
- A flow decided on zero payload packets (SYN/RST, or a handshake closed before any byte) stays
  in every metric; it is also counted as `no_payload`, and `recall_with_payload` (information
  only, never a bar) shows the recall over the flows that carried something to inspect.
- Decision latency: over the flows given the right final label (p2p_likely for P2P classes,
  normal_likely for `normal`); packets = decided_at_packet (payload packets, 1-based),
  seconds = decided_at - ts. p90 is the nearest-rank percentile.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

# bt_attempt: a peer-wire connection whose responder never sent a byte (see docs/corpus.md);
# reported, with no bar: no detector may label an encrypted flow from one side alone.
P2P_CLASSES = ("bt_mse", "bt_plain", "utp", "dht", "tracker", "lsd", "bt_attempt")
NEGATIVE = "normal"
CLASSES = P2P_CLASSES + (NEGATIVE,)
NORMAL_PROTOCOLS = ("tls", "ssh", "http", "dns", "shadowsocks", "obfs4", "other")

P2P_LIKELY, NORMAL_LIKELY, UNKNOWN = "p2p_likely", "normal_likely", "unknown"
P2P_HOST, NORMAL_HOST = "p2p_host", "normal_host"
UNSEEN = "unseen"  # a label row no prediction matched
NO_GUESS = "-"
PRED_COLUMNS = tuple(f"{P2P_LIKELY}/{c}" for c in P2P_CLASSES) + (
    f"{P2P_LIKELY}/{NO_GUESS}",
    UNKNOWN,
    NORMAL_LIKELY,
    UNSEEN,
)

LABEL_COLUMNS = ("pcap", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "label", "protocol", "client", "server")
HOST_COLUMNS = ("pcap", "host", "role")

# The accuracy bars of the issue, verbatim; tests/test_accuracy_bars.py asserts them.
BARS: dict[str, float] = {
    "recall.bt_mse": 0.98,
    "recall.bt_plain": 0.99,
    "recall.utp": 0.99,
    "recall.dht": 0.99,
    "recall.tracker": 0.99,
    "fp_rate.normal": 0.005,
    "normal_hosts_flagged": 0,
    "p2p_hosts_missed": 0,
    "median_packets.bt_mse": 6,
}

EXIT_OK, EXIT_ERROR, EXIT_INPUT = 0, 1, 2

Key = tuple[str, str, int, str, int]  # proto, orig_h, orig_p, resp_h, resp_p


class EvalError(Exception):
    """A problem with the evaluation input; the message names the file and row."""


# ---------------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class LabelRow:
    pcap: str
    proto: str
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    label: str  # p2p | normal | unlabeled
    protocol: str
    client: str = ""
    server: str = ""

    @property
    def key(self) -> Key:
        return (self.proto, self.orig_h, self.orig_p, self.resp_h, self.resp_p)

    @property
    def truth(self) -> str | None:
        """The evaluation class, or None when the row does not count (unlabeled)."""
        if self.label == "p2p":
            return self.protocol
        if self.label == "normal":
            return NEGATIVE
        return None


@dataclass(frozen=True, slots=True)
class HostRow:
    pcap: str
    host: str
    role: str  # p2p_host | normal_host


@dataclass(frozen=True, slots=True)
class FlowPrediction:
    pcap: str
    proto: str
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    label: str  # p2p_likely | normal_likely | unknown
    protocol: str | None = None  # the verdict's protocol ("unknown" = no guess, like None)
    decided_at_packet: int | None = None
    decision_seconds: float | None = None
    reasons: tuple[str, ...] = ()
    families_own: tuple[str, ...] = ()  # families from the flow's own evidence
    families_context: tuple[str, ...] = ()  # families from context (peer cache, host)

    @property
    def key(self) -> Key:
        return (self.proto, self.orig_h, self.orig_p, self.resp_h, self.resp_p)

    @property
    def column(self) -> str:
        if self.label == P2P_LIKELY:
            return f"{P2P_LIKELY}/{self.protocol if self.protocol in P2P_CLASSES else NO_GUESS}"
        return self.label if self.label in (UNKNOWN, NORMAL_LIKELY) else UNKNOWN

    @classmethod
    def from_verdict(cls, pcap: str, v) -> "FlowPrediction":
        k = v.key
        return cls(
            pcap, k.proto, k.orig_h, k.orig_p, k.resp_h, k.resp_p, v.label, v.protocol,
            v.decided_at_packet, max(0.0, v.decided_at - v.ts), tuple(v.reasons),
            tuple(getattr(v, "families_own", ())), tuple(getattr(v, "families_context", ())),
        )


@dataclass(frozen=True, slots=True)
class HostPrediction:
    pcap: str
    host: str
    final_label: str
    ever_p2p_host: bool  # labelled p2p_host at any point of the capture (an alert was raised)
    reasons: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------- input
def _read_csv(path: str | Path, columns: Sequence[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            rd = csv.DictReader(f)
            missing = [c for c in columns if c not in (rd.fieldnames or [])]
            if missing:
                raise EvalError(f"{path}: missing column(s) {missing}; expected {list(columns)}")
            return list(rd)
    except OSError as e:
        raise EvalError(f"{path}: cannot read: {e.strerror}") from None


def load_labels(path: str | Path) -> list[LabelRow]:
    out = []
    for i, r in enumerate(_read_csv(path, LABEL_COLUMNS), start=2):
        try:
            row = LabelRow(
                r["pcap"], r["proto"].lower(), r["orig_h"], int(r["orig_p"]), r["resp_h"], int(r["resp_p"]),
                r["label"], r["protocol"] or "", r["client"] or "", r["server"] or "",
            )
        except (TypeError, ValueError) as e:
            raise EvalError(f"{path}:{i}: bad row ({e}): {r}") from None
        if row.label not in ("p2p", "normal", "unlabeled"):
            raise EvalError(f"{path}:{i}: label must be p2p|normal|unlabeled, got {row.label!r}")
        if row.label == "p2p" and row.protocol not in P2P_CLASSES:
            raise EvalError(f"{path}:{i}: p2p protocol must be one of {list(P2P_CLASSES)}, got {row.protocol!r}")
        out.append(row)
    return out


def load_hosts(path: str | Path) -> list[HostRow]:
    out = []
    for i, r in enumerate(_read_csv(path, HOST_COLUMNS), start=2):
        if r["role"] not in (P2P_HOST, NORMAL_HOST):
            raise EvalError(f"{path}:{i}: role must be p2p_host|normal_host, got {r['role']!r}")
        out.append(HostRow(r["pcap"], r["host"], r["role"]))
    return out


def predict_pcap(path: str | Path, cfg=None) -> tuple[list[FlowPrediction], list[HostPrediction]]:
    """Run a fresh engine over one pcap; flows in decision order, hosts one per address."""
    from .engine import analyze_pcaps
    from .verdict import FlowVerdict

    name = Path(path).name
    flows: list[FlowPrediction] = []
    hosts: dict[str, HostPrediction] = {}
    for v in analyze_pcaps([str(path)], cfg):
        if isinstance(v, FlowVerdict):
            flows.append(FlowPrediction.from_verdict(name, v))
        else:
            prev = hosts.get(v.host)
            ever = v.label == P2P_HOST or (prev is not None and prev.ever_p2p_host)
            hosts[v.host] = HostPrediction(name, v.host, v.label, ever, tuple(v.reasons))
    return flows, list(hosts.values())


# ---------------------------------------------------------------------------------- metrics
def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r) if p + r else 0.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): always one of the observed values."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def _spread(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else None,
        "p90": percentile(values, 90),
    }


@dataclass
class ClassResult:
    cls: str
    flows: int = 0
    detected: int = 0  # P2P class: p2p_likely (any guess); normal: normal_likely
    guess_correct: int = 0
    unknown: int = 0
    false_positive: int = 0  # normal only: labelled p2p_likely
    unseen: int = 0
    no_payload: int = 0  # flows decided on zero payload packets: nothing to inspect
    precision: float | None = None
    recall: float | None = None
    recall_with_payload: float | None = None  # informational: recall over flows that carried payload
    f1: float | None = None
    guess_accuracy: float | None = None
    fp_rate: float | None = None
    decision_packets: dict = field(default_factory=dict)
    decision_seconds: dict = field(default_factory=dict)


@dataclass
class EvalReport:
    pcaps: list[str]
    classes: dict[str, ClassResult]
    confusion: dict[str, dict[str, int]]
    overall_p2p: dict
    negatives_by_protocol: dict[str, dict]
    unknown_share: float | None
    labelled_flows: int
    client_pairs: list[dict]
    hosts: dict
    unlabeled: list[dict]
    orientation_mismatches: list[dict]
    unseen_labels: list[dict]
    misses: list[dict]
    false_positives: list[dict]
    duplicate_labels: list[dict]
    predictions: list[FlowPrediction] = field(default_factory=list, repr=False)  # every flow scored

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["predictions"]
        d["bars"] = check_bars(self)
        return d

    def present(self, cls: str) -> bool:
        return self.classes[cls].flows > 0


def _flow_dict(p: FlowPrediction | LabelRow, **extra) -> dict:
    d = {"pcap": p.pcap, "proto": p.proto, "orig_h": p.orig_h, "orig_p": p.orig_p, "resp_h": p.resp_h, "resp_p": p.resp_p}
    if isinstance(p, FlowPrediction):
        d.update(label=p.label, protocol=p.protocol, decided_at_packet=p.decided_at_packet, reasons=list(p.reasons),
                 families_own=list(p.families_own), families_context=list(p.families_context))
    d.update(extra)
    return d


def evaluate(
    flows: Iterable[FlowPrediction],
    labels: Iterable[LabelRow],
    hosts: Iterable[HostPrediction] = (),
    host_roles: Iterable[HostRow] = (),
    pcaps: Iterable[str] | None = None,
    host_scope: Iterable[str] | None = None,
) -> EvalReport:
    """Score predictions against label rows. Pure: no I/O.

    `pcaps` limits the label rows considered to those captures (default: every pcap that has
    a prediction or a label row); `host_scope` the host rows (default: the same captures).
    """
    flows = list(flows)
    labels = list(labels)
    if pcaps is None:
        names = sorted({p.pcap for p in flows} | {r.pcap for r in labels})
    else:
        names = sorted(Path(p).name for p in pcaps)
    scope = set(names)

    index: dict[tuple[str, Key], LabelRow] = {}
    duplicates = []
    for r in labels:
        if r.pcap not in scope:
            continue
        k = (r.pcap, r.key)
        if k in index:
            duplicates.append(_flow_dict(r, label=r.label, protocol=r.protocol, first=index[k].protocol))
            continue
        index[k] = r

    matched: list[tuple[LabelRow, FlowPrediction]] = []
    used: set[tuple[str, Key]] = set()
    unlabeled, mismatches = [], []
    for p in flows:
        k = (p.pcap, p.key)
        row = index.get(k)
        if row is None:
            rk = (p.pcap, (p.proto, p.resp_h, p.resp_p, p.orig_h, p.orig_p))
            row = index.get(rk)
            if row is not None:
                k = rk
                mismatches.append(_flow_dict(p, labelled_orig=f"{row.orig_h}:{row.orig_p}"))
        if row is None or row.truth is None:
            unlabeled.append(_flow_dict(p, why="no label row" if row is None else "label unlabeled"))
            if row is not None:
                used.add(k)
            continue
        used.add(k)
        matched.append((row, p))

    unseen_rows = [r for k, r in index.items() if k not in used and r.truth is not None]

    classes = {c: ClassResult(c) for c in CLASSES}
    confusion = {c: {col: 0 for col in PRED_COLUMNS} for c in CLASSES}
    extra_classes: set[str] = set()
    pred_count: Counter[str] = Counter()  # predicted columns over all matched flows
    p2p_pred_true: Counter[str] = Counter()  # predicted p2p/guess AND truly P2P
    packets: dict[str, list[float]] = defaultdict(list)
    seconds: dict[str, list[float]] = defaultdict(list)
    neg_by_proto: dict[str, Counter] = defaultdict(Counter)
    pairs: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    misses, fps = [], []

    for row, p in matched:
        t = row.truth
        assert t is not None
        if t not in classes:  # a protocol this evaluator does not know: keep it visible
            classes[t] = ClassResult(t)
            confusion[t] = {col: 0 for col in PRED_COLUMNS}
            extra_classes.add(t)
        c = classes[t]
        col = p.column
        confusion[t][col] += 1
        pred_count[col] += 1
        c.flows += 1
        is_p2p = p.label == P2P_LIKELY
        pair = pairs[(t, row.client, row.server)]
        pair["flows"] += 1
        if p.label == UNKNOWN:
            c.unknown += 1
        empty = p.decided_at_packet == 0
        if empty:
            c.no_payload += 1
        if t == NEGATIVE:
            nb = neg_by_proto[row.protocol or "other"]
            nb["flows"] += 1
            if is_p2p:
                c.false_positive += 1
                nb["false_positive"] += 1
                pair["false_positive"] += 1
                fps.append(_flow_dict(p, truth=row.protocol, client=row.client, server=row.server))
            elif p.label == NORMAL_LIKELY:
                c.detected += 1
                nb["normal_likely"] += 1
                _latency(p, packets[t], seconds[t])
            else:
                nb["unknown"] += 1
        else:
            if is_p2p:
                c.detected += 1
                pair["detected"] += 1
                p2p_pred_true[col] += 1
                if p.protocol == t:
                    c.guess_correct += 1
                _latency(p, packets[t], seconds[t])
            else:
                misses.append(_flow_dict(p, truth=t, client=row.client, server=row.server, no_payload=empty))

    for r in unseen_rows:
        t = r.truth
        assert t is not None
        if t not in classes:
            classes[t] = ClassResult(t)
            confusion[t] = {col: 0 for col in PRED_COLUMNS}
        classes[t].flows += 1
        classes[t].unseen += 1
        confusion[t][UNSEEN] += 1
        pair = pairs[(t, r.client, r.server)]
        pair["flows"] += 1
        if t == NEGATIVE:
            neg_by_proto[r.protocol or "other"]["flows"] += 1
            neg_by_proto[r.protocol or "other"]["unseen"] += 1
        else:
            misses.append(_flow_dict(r, label=UNSEEN, protocol=None, truth=t, client=r.client, server=r.server))

    for name, c in classes.items():
        c.decision_packets = _spread(packets[name])
        c.decision_seconds = _spread(seconds[name])
        if name == NEGATIVE:
            c.recall = _ratio(c.detected, c.flows)
            c.precision = _ratio(c.detected, pred_count[NORMAL_LIKELY])
            c.fp_rate = _ratio(c.false_positive, c.flows)
        else:
            col = f"{P2P_LIKELY}/{name}"
            c.recall = _ratio(c.detected, c.flows)
            c.precision = _ratio(p2p_pred_true[col], pred_count[col])
            c.guess_accuracy = _ratio(c.guess_correct, c.detected)
            empty_detected = sum(1 for r, p in matched if r.truth == name and p.decided_at_packet == 0 and p.label == P2P_LIKELY)
            c.recall_with_payload = _ratio(c.detected - empty_detected, c.flows - c.unseen - c.no_payload)
        c.f1 = _f1(c.precision, c.recall)

    p2p_flows = sum(c.flows for n, c in classes.items() if n != NEGATIVE)
    p2p_det = sum(c.detected for n, c in classes.items() if n != NEGATIVE)
    p2p_pred = sum(v for k, v in pred_count.items() if k.startswith(P2P_LIKELY + "/"))
    prec = _ratio(p2p_det, p2p_pred)
    rec = _ratio(p2p_det, p2p_flows)
    overall = {"flows": p2p_flows, "detected": p2p_det, "predicted_p2p": p2p_pred, "precision": prec, "recall": rec, "f1": _f1(prec, rec)}

    n_matched = len(matched)
    unknown_share = _ratio(sum(1 for _, p in matched if p.label == UNKNOWN), n_matched)

    client_pairs = []
    for (t, cl, sv), cnt in sorted(pairs.items()):
        d = {"class": t, "client": cl, "server": sv, "flows": cnt["flows"]}
        if t == NEGATIVE:
            d["false_positive"] = cnt["false_positive"]
            d["fp_rate"] = _ratio(cnt["false_positive"], cnt["flows"])
        else:
            d["detected"] = cnt["detected"]
            d["recall"] = _ratio(cnt["detected"], cnt["flows"])
        client_pairs.append(d)

    negatives = {}
    for proto_name, cnt in sorted(neg_by_proto.items()):
        negatives[proto_name] = dict(cnt) | {"fp_rate": _ratio(cnt["false_positive"], cnt["flows"])}

    return EvalReport(
        pcaps=names,
        classes=classes,
        confusion=confusion,
        overall_p2p=overall,
        negatives_by_protocol=negatives,
        unknown_share=unknown_share,
        labelled_flows=n_matched + len(unseen_rows),
        client_pairs=client_pairs,
        hosts=_hosts(list(hosts), [h for h in host_roles if h.pcap in (scope if host_scope is None else set(host_scope))]),
        unlabeled=unlabeled,
        orientation_mismatches=mismatches,
        unseen_labels=[_flow_dict(r, truth=r.truth) for r in unseen_rows],
        misses=misses,
        false_positives=fps,
        duplicate_labels=duplicates,
        predictions=flows,
    )


def _latency(p: FlowPrediction, packets: list[float], seconds: list[float]) -> None:
    if p.decided_at_packet is not None:
        packets.append(p.decided_at_packet)
    if p.decision_seconds is not None:
        seconds.append(p.decision_seconds)


def _hosts(preds: list[HostPrediction], roles: list[HostRow]) -> dict:
    by = {(h.pcap, h.host): h for h in preds}
    p2p_rows = [r for r in roles if r.role == P2P_HOST]
    normal_rows = [r for r in roles if r.role == NORMAL_HOST]
    missed, flagged = [], []
    for r in p2p_rows:
        h = by.get((r.pcap, r.host))
        if h is None or not h.ever_p2p_host:
            missed.append({"pcap": r.pcap, "host": r.host, "final_label": h.final_label if h else "no verdict",
                           "reasons": list(h.reasons) if h else []})
    for r in normal_rows:
        h = by.get((r.pcap, r.host))
        if h is not None and h.ever_p2p_host:
            flagged.append({"pcap": r.pcap, "host": r.host, "final_label": h.final_label, "reasons": list(h.reasons)})
    known = {(r.pcap, r.host) for r in roles}
    unlabelled = [{"pcap": h.pcap, "host": h.host, "final_label": h.final_label, "ever_p2p_host": h.ever_p2p_host}
                  for h in preds if (h.pcap, h.host) not in known]
    return {
        "p2p_hosts": len(p2p_rows),
        "p2p_hosts_flagged": len(p2p_rows) - len(missed),
        "p2p_hosts_missed": missed,
        "normal_hosts": len(normal_rows),
        "normal_hosts_flagged": flagged,
        "unlabelled_hosts": unlabelled,
        "evaluated": bool(roles),
    }


def check_bars(rep: EvalReport) -> list[dict]:
    """Each bar: value, threshold, status pass | fail | absent (no flows of that class)."""
    out = []

    def bar(name: str, value, ok, absent: bool) -> None:
        status = "absent" if absent else ("pass" if ok else "fail")
        out.append({"bar": name, "threshold": BARS[name], "value": value, "status": status})

    for name, thr in BARS.items():
        kind, _, cls = name.partition(".")
        if kind == "recall":
            c = rep.classes[cls]
            bar(name, c.recall, c.recall is not None and c.recall >= thr, c.flows == 0)
        elif kind == "fp_rate":
            c = rep.classes[cls]
            bar(name, c.fp_rate, c.fp_rate is not None and c.fp_rate <= thr, c.flows == 0)
        elif kind == "median_packets":
            c = rep.classes[cls]
            med = c.decision_packets.get("median")
            bar(name, med, med is not None and med <= thr, c.flows == 0)
        elif name == "normal_hosts_flagged":
            n = len(rep.hosts["normal_hosts_flagged"])
            bar(name, n, n <= thr, rep.hosts["normal_hosts"] == 0)
        elif name == "p2p_hosts_missed":
            n = len(rep.hosts["p2p_hosts_missed"])
            bar(name, n, n <= thr, rep.hosts["p2p_hosts"] == 0)
    return out


# ---------------------------------------------------------------------------------- driver
def run_eval(
    pcaps: Sequence[str | Path], labels_path: str | Path, hosts_path: str | Path | None = None, cfg=None
) -> EvalReport:
    labels = load_labels(labels_path)
    roles = load_hosts(hosts_path) if hosts_path else []
    flows: list[FlowPrediction] = []
    hosts: list[HostPrediction] = []
    for p in pcaps:
        f, h = predict_pcap(p, cfg)
        flows += f
        hosts += h
    return evaluate(flows, labels, hosts, roles, pcaps=[str(p) for p in pcaps])


def evaluate_per_pcap(pcaps: Sequence[str | Path], labels: list[LabelRow], roles: list[HostRow], cfg=None) -> EvalReport:
    """One fresh engine per capture (the default method)."""
    flows: list[FlowPrediction] = []
    hosts: list[HostPrediction] = []
    for p in pcaps:
        f, h = predict_pcap(p, cfg)
        flows += f
        hosts += h
    return evaluate(flows, labels, hosts, roles, pcaps=[str(p) for p in pcaps])


def evaluate_timeline(
    pcaps: Sequence[str | Path], labels: list[LabelRow], roles: list[HostRow], cfg=None, shared: str | None = None
) -> EvalReport:
    """All captures through one engine (msewatch/timeline.py); `shared` = client | both."""
    from .timeline import run_timeline

    from .timeline import TIMELINE

    res = run_timeline(pcaps, labels, roles, cfg, shared)
    return evaluate(res.flows, labels, res.hosts, res.roles, pcaps=[str(p) for p in pcaps], host_scope=[TIMELINE])


def evaluate_perturbed(
    pcaps: Sequence[str | Path], labels: list[LabelRow], roles: list[HostRow], spec: str, workdir: str | Path, cfg=None
) -> EvalReport:
    """Rewrite every capture with the artifact(s) of `spec` (msewatch/perturb.py) into
    `workdir`, map the ground truth along, and evaluate one engine per rewritten capture."""
    from .perturb import parse_spec, perturb_pcap

    sp = parse_spec(spec)
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    rewritten = []
    names = set()
    rw = None
    for p in pcaps:
        dst = out / Path(p).name
        rw = perturb_pcap(p, dst, sp)
        rewritten.append(dst)
        names.add(Path(p).name)
    if rw is not None and sp.changes_addresses:
        labels = [LabelRow(r.pcap, r.proto, rw.address(r.orig_h), r.orig_p, rw.address(r.resp_h), r.resp_p, r.label,
                           r.protocol, r.client, r.server) for r in labels if r.pcap in names]
        roles = [HostRow(h.pcap, rw.address(h.host), h.role) for h in roles if h.pcap in names]
    return evaluate_per_pcap(rewritten, labels, roles, cfg)


# --- robustness: modes (where host state meets normal flows) and capture artifacts ------------

MODES = ("one-timeline", "shared-client", "shared-both")
# MSE recall bars per capture artifact (issue 10); every other variant keeps 1.00, except
# `midstream` (the first 12 packets gone: no MSE exchange is left to see), whose bar is FP 0
VARIANT_MSE_RECALL = {"nostart3": 0.98, "snaplen96": 0.98, "oneside": 0.90, "midstream": 0.0}
ROBUST_FP_RATE = 0.0


@dataclass
class RobustnessReport:
    base: EvalReport
    runs: dict[str, EvalReport]  # mode or variant name -> report

    def bars(self) -> list[dict]:
        """Per run: FP rate 0; modes keep the per-pcap recall of every class with a bar;
        variants meet their MSE recall bar (VARIANT_MSE_RECALL, else 1.00)."""
        out = []
        for name, rep in self.runs.items():
            n = rep.classes[NEGATIVE]
            out.append(_bar(name, "fp_rate.normal", n.fp_rate, ROBUST_FP_RATE, n.fp_rate is not None and n.fp_rate <= ROBUST_FP_RATE, "≤"))
            if name in MODES:
                for bar in BARS:
                    kind, _, cls = bar.partition(".")
                    if kind != "recall" or not self.base.present(cls):
                        continue
                    want = self.base.classes[cls].recall
                    got = rep.classes[cls].recall
                    out.append(_bar(name, bar, got, want, got is not None and got >= want, "≥"))
            else:
                want = VARIANT_MSE_RECALL.get(name, 1.0)
                got = rep.classes["bt_mse"].recall
                out.append(_bar(name, "recall.bt_mse", got, want, got is not None and got >= want, "≥"))
        return out

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "runs": {k: v.to_dict() for k, v in self.runs.items()}, "bars": self.bars()}


def _bar(run: str, bar: str, value, threshold, ok: bool, op: str) -> dict:
    return {"run": run, "bar": bar, "op": op, "threshold": threshold, "value": value, "status": "pass" if ok else "fail"}


def run_robustness(
    pcaps: Sequence[str | Path], labels_path: str | Path, hosts_path: str | Path | None, cfg=None,
    modes: Sequence[str] = MODES, variants: Sequence[str] = (), workdir: str | Path | None = None,
) -> RobustnessReport:
    """The per-pcap evaluation, then each mode and each capture-artifact variant."""
    import tempfile

    labels = load_labels(labels_path)
    roles = load_hosts(hosts_path) if hosts_path else []
    base = evaluate_per_pcap(pcaps, labels, roles, cfg)
    runs: dict[str, EvalReport] = {}
    for m in modes:
        runs[m] = evaluate_timeline(pcaps, labels, roles, cfg, None if m == "one-timeline" else m.split("-", 1)[1])
    if variants:
        with tempfile.TemporaryDirectory(prefix="msewatch-perturb-", dir=workdir) as tmp:
            for v in variants:
                runs[v] = evaluate_perturbed(pcaps, labels, roles, v, Path(tmp) / _safe(v), cfg)
    return RobustnessReport(base, runs)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def robustness_markdown(rr: RobustnessReport) -> str:
    runs = {"per-pcap": rr.base, **rr.runs}
    p2p = [c for c in P2P_CLASSES if rr.base.present(c)]
    negs = sorted({k for r in runs.values() for k in r.negatives_by_protocol})
    rows = []
    for name, rep in runs.items():
        rows.append([name] + [rep.classes[c].recall for c in p2p] + [rep.classes[NEGATIVE].fp_rate]
                    + [rep.negatives_by_protocol.get(n, {}).get("fp_rate") for n in negs]
                    + [rep.unknown_share])
    head = ["run"] + [f"{c} recall" for c in p2p] + ["FP rate"] + [f"FP {n}" for n in negs] + ["unknown share"]
    counts = [["flows"] + [rr.base.classes[c].flows for c in p2p] + [rr.base.classes[NEGATIVE].flows]
              + [rr.base.negatives_by_protocol.get(n, {}).get("flows") for n in negs] + [None]]
    hosts = []
    for name, rep in runs.items():
        h = rep.hosts
        hosts.append([name, h["p2p_hosts"], h["p2p_hosts_flagged"], h["normal_hosts"], len(h["normal_hosts_flagged"])])
    bars = [[b["run"], b["bar"], f"{b['op']} {_fmt(b['threshold'])}", b["value"], b["status"].upper()] for b in rr.bars()]
    parts = [
        _table(head, counts + rows),
        "",
        _table(["run", "p2p hosts", "flagged", "normal hosts", "normal flagged"], hosts),
        "",
        _table(["run", "bar", "threshold", "value", "status"], bars, "lllrl"),
    ]
    misses = [(name, d) for name, rep in rr.runs.items()
              for d in [m for m in rep.misses if m.get("truth") == "bt_mse"] + rep.false_positives]
    if misses:
        parts += ["", f"Misses of MSE flows and false positives in these runs ({len(misses)}):", ""]
        for name, d in misses[:40]:
            parts.append(f"- {name}: " + _flow_lines([d])[0][2:])
        if len(misses) > 40:
            parts.append(f"- … and {len(misses) - 40} more (see the JSON output)")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------- Markdown
def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:.{digits}f}"
    return str(v)


def _table(head: Sequence[str], rows: Iterable[Sequence], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(head) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(_fmt(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def _tuple_str(d: dict) -> str:
    return f"{d['proto']} {d['orig_h']}:{d['orig_p']} → {d['resp_h']}:{d['resp_p']}"


def class_table(rep: EvalReport) -> str:
    rows = []
    for name, c in rep.classes.items():
        if name == NEGATIVE:
            continue
        dp, ds = c.decision_packets, c.decision_seconds
        rows.append([name, c.flows, c.detected, c.recall, c.precision, c.f1, c.guess_accuracy, c.unknown,
                     c.no_payload, c.recall_with_payload, dp["median"], dp["p90"], ds["median"], ds["p90"]])
    o = rep.overall_p2p
    p2p = [c for n, c in rep.classes.items() if n != NEGATIVE]
    rows.append(["**all P2P**", o["flows"], o["detected"], o["recall"], o["precision"], o["f1"], None,
                 sum(c.unknown for c in p2p), sum(c.no_payload for c in p2p), None, None, None, None, None])
    return _table(
        ["class", "flows", "detected", "recall", "precision", "F1", "guess acc.", "unknown", "no payload",
         "recall w/ payload", "pkts med", "pkts p90", "s med", "s p90"],
        rows,
    )


def negative_table(rep: EvalReport) -> str:
    n = rep.classes[NEGATIVE]
    rows = [["**all negatives**", n.flows, n.false_positive, n.fp_rate, n.unknown, n.detected, n.recall, n.precision]]
    for proto_name, d in rep.negatives_by_protocol.items():
        rows.append([proto_name, d.get("flows", 0), d.get("false_positive", 0), d["fp_rate"], d.get("unknown", 0),
                     d.get("normal_likely", 0), _ratio(d.get("normal_likely", 0), d.get("flows", 0)), None])
    return _table(["negatives", "flows", "p2p_likely (FP)", "FP rate", "unknown", "normal_likely",
                   "normal recall", "normal precision"], rows)


def confusion_table(rep: EvalReport) -> str:
    used = [c for c in PRED_COLUMNS if any(rep.confusion[t][c] for t in rep.confusion)] or list(PRED_COLUMNS)
    rows = [[t] + [rep.confusion[t][c] for c in used] for t in rep.confusion if rep.classes[t].flows]
    head = ["true \\ predicted"] + [c.replace(P2P_LIKELY + "/", "p2p/") for c in used]
    return _table(head, rows)


def pairs_table(rep: EvalReport) -> str:
    rows = []
    for d in rep.client_pairs:
        if d["class"] == NEGATIVE:
            rows.append([d["class"], d["client"], d["server"], d["flows"], None, d["false_positive"], d["fp_rate"]])
        else:
            rows.append([d["class"], d["client"], d["server"], d["flows"], d["recall"], None, None])
    return _table(["class", "client", "server", "flows", "recall", "FP", "FP rate"], rows, "lllrrrr")


def hosts_text(rep: EvalReport) -> str:
    h = rep.hosts
    if not h["evaluated"]:
        return "No hosts.csv: host-level result not evaluated."
    rows = [
        ["p2p_host", h["p2p_hosts"], h["p2p_hosts_flagged"], len(h["p2p_hosts_missed"])],
        ["normal_host", h["normal_hosts"], len(h["normal_hosts_flagged"]), None],
    ]
    out = [_table(["role", "hosts", "flagged p2p_host", "missed"], rows)]
    for m in h["p2p_hosts_missed"]:
        out.append(f"- p2p host not flagged: {m['pcap']} {m['host']} (final {m['final_label']})")
    for m in h["normal_hosts_flagged"]:
        out.append(f"- normal host flagged p2p_host: {m['pcap']} {m['host']} (final {m['final_label']})")
    return "\n".join(out)


def bars_table(rep: EvalReport) -> str:
    rows = []
    for b in check_bars(rep):
        op = "≤" if b["bar"].startswith(("fp_rate", "normal_hosts", "p2p_hosts", "median")) else "≥"
        rows.append([b["bar"], f"{op} {b['threshold']}", b["value"], b["status"].upper()])
    return _table(["bar", "threshold", "value", "status"], rows, "llrl")


def _flow_lines(items: list[dict], limit: int = 50) -> list[str]:
    out = []
    for d in items[:limit]:
        why = " ".join(d.get("reasons") or [])
        guess = d.get("protocol") if d.get("protocol") not in (None, "", "unknown") else "-"
        out.append(f"- `{d['pcap']}` {_tuple_str(d)} truth={d.get('truth')} got={d.get('label')}"
                   f"/{guess} at pkt {d.get('decided_at_packet')}"
                   + (" (no payload)" if d.get("no_payload") else "") + (f" — {why}" if why else ""))
    if len(items) > limit:
        out.append(f"- … and {len(items) - limit} more (see the JSON output)")
    return out


def report_markdown(rep: EvalReport, title: str = "msewatch evaluation") -> str:
    n = len(rep.unlabeled)
    parts = [
        f"### {title}",
        "",
        f"{len(rep.pcaps)} pcaps, {rep.labelled_flows} labelled flows, unknown share "
        f"{_fmt(rep.unknown_share)}, {n} flows without a label (not counted), "
        f"{len(rep.orientation_mismatches)} orientation mismatches, {len(rep.unseen_labels)} label rows "
        "the engine never reported.",
        "",
        "#### Bars",
        "",
        bars_table(rep),
        "",
        "#### P2P classes",
        "",
        class_table(rep),
        "",
        "#### Negatives",
        "",
        negative_table(rep),
        "",
        "#### Confusion matrix",
        "",
        confusion_table(rep),
        "",
        "#### Per client pair",
        "",
        pairs_table(rep),
        "",
        "#### Hosts",
        "",
        hosts_text(rep),
        "",
        f"#### Misses ({len(rep.misses)}) and false positives ({len(rep.false_positives)})",
        "",
    ]
    parts += _flow_lines(rep.misses + rep.false_positives) or ["None."]
    if rep.unlabeled:
        parts += ["", f"#### Flows without a label row ({n})", ""]
        parts += [f"- `{d['pcap']}` {_tuple_str(d)} {d['label']}/{d['protocol'] if d['protocol'] not in (None, '', 'unknown') else '-'} ({d['why']})"
                  for d in rep.unlabeled[:50]]
        if n > 50:
            parts.append(f"- … and {n - 50} more")
    if rep.orientation_mismatches:
        parts += ["", f"#### Orientation mismatches ({len(rep.orientation_mismatches)})", ""]
        parts += [f"- `{d['pcap']}` engine {_tuple_str(d)}, label says orig {d['labelled_orig']}"
                  for d in rep.orientation_mismatches[:50]]
    if rep.duplicate_labels:
        parts += ["", f"#### Duplicate label rows ({len(rep.duplicate_labels)}; the first row wins)", ""]
        parts += [f"- `{d['pcap']}` {_tuple_str(d)}" for d in rep.duplicate_labels[:50]]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msewatch eval",
        description="Evaluate msewatch on labelled pcaps (labels.csv/hosts.csv, docs/evaluation.md).",
    )
    p.add_argument("pcap", nargs="+", help="pcap files; each runs through its own fresh engine")
    p.add_argument("--labels", help="labels.csv (default: labels.csv next to the first pcap)")
    p.add_argument("--hosts", help="hosts.csv (default: hosts.csv next to the first pcap, if present)")
    p.add_argument("-c", "--config", help="YAML config (default: the bundled one)")
    p.add_argument("--json", help="write the full report as JSON here ('-' = stdout)")
    p.add_argument("--markdown", help="write the Markdown report here ('-' = stdout; the default when no --json)")
    p.add_argument("--check-bars", action="store_true", help="exit 3 when a bar fails")
    p.add_argument("--one-timeline", action="store_true",
                   help="all captures through one engine, rebased in time so they overlap")
    p.add_argument("--shared-host", choices=("client", "both"),
                   help="with --one-timeline: the normal captures' clients (or both ends) become the P2P hosts")
    p.add_argument("--perturb", metavar="SPEC",
                   help="rewrite the captures with capture artifacts first (msewatch/perturb.py: "
                        "mss=536, gro, retrans=0.05, loss=0.02, nostart=3, snaplen=96, oneside, vlan, ipv6, "
                        "joined with '+', or a variant name)")
    p.add_argument("--robustness", action="store_true",
                   help="per-pcap, the three one-timeline modes and every standard capture-artifact variant, "
                        "with their bars (docs/evaluation.md)")
    return p


def main_eval(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from .config import ConfigError, load_config
    from .sources.pcap import PcapError

    for p in args.pcap:
        if not os.path.isfile(p):
            print(f"msewatch eval: error: {p}: no such file", file=sys.stderr)
            return EXIT_INPUT
    here = Path(args.pcap[0]).resolve().parent
    labels = args.labels or here / "labels.csv"
    hosts = args.hosts
    if hosts is None and (here / "hosts.csv").is_file():
        hosts = here / "hosts.csv"
    if not Path(labels).is_file():
        print(f"msewatch eval: error: {labels}: no labels file (give --labels)", file=sys.stderr)
        return EXIT_INPUT
    from .perturb import VARIANTS, PerturbError, parse_spec

    if args.shared_host and not args.one_timeline:
        args.one_timeline = True
    if args.perturb and (args.one_timeline or args.robustness):
        print("msewatch eval: error: --perturb runs one engine per capture; it does not combine with "
              "--one-timeline or --robustness", file=sys.stderr)
        return EXIT_ERROR
    try:
        if args.perturb:
            parse_spec(args.perturb)
        cfg = load_config(args.config)
        if args.robustness:
            rr = run_robustness(args.pcap, labels, hosts, cfg, MODES, tuple(VARIANTS))
            return _write_robustness(rr, args)
        lab = load_labels(labels)
        roles = load_hosts(hosts) if hosts else []
        if args.one_timeline:
            rep = evaluate_timeline(args.pcap, lab, roles, cfg, args.shared_host)
        elif args.perturb:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="msewatch-perturb-") as tmp:
                rep = evaluate_perturbed(args.pcap, lab, roles, args.perturb, tmp, cfg)
        else:
            rep = evaluate_per_pcap(args.pcap, lab, roles, cfg)
    except (ConfigError, EvalError, PerturbError) as e:
        print(f"msewatch eval: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except PcapError as e:
        print(f"msewatch eval: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    _write_outputs(rep.to_dict(), report_markdown(rep), args)
    if args.check_bars and any(b["status"] == "fail" for b in check_bars(rep)):
        return 3
    return EXIT_OK


def _write_outputs(data: dict, md: str, args) -> None:
    """--json (a file or "-") and the Markdown report (--markdown FILE, or stdout unless the
    JSON went there)."""
    if args.json:
        import orjson

        raw = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
        if args.json == "-":
            sys.stdout.buffer.write(raw + b"\n")
            sys.stdout.flush()
        else:
            Path(args.json).write_bytes(raw + b"\n")
    if args.markdown and args.markdown != "-":
        Path(args.markdown).write_text(md)
    elif args.markdown == "-" or args.json != "-":
        sys.stdout.write(md)


def _write_robustness(rr: RobustnessReport, args) -> int:
    _write_outputs(rr.to_dict(), robustness_markdown(rr), args)
    if args.check_bars and any(b["status"] == "fail" for b in rr.bars() + check_bars(rr.base)):
        return 3
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main_eval(sys.argv[1:]))
