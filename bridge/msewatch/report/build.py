"""Assemble the report: summary, flow cards, host timelines, comparison; render one HTML file.

Cost model: every flow passes through the summary counters once (O(flows)); charts are drawn
only for the flows and hosts shown in detail (top N), whose evidence alone is parsed.
"""

from __future__ import annotations

import heapq
import os
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib import resources
from typing import Sequence

from markupsafe import Markup

from . import charts
from .. import verdict_fields as vf
from ..evaluate import percentile
from .inputs import ReportInput, enable_key_join
from .labels import Truth

LABEL_ORDER = ("p2p_likely", "unknown", "normal_likely")
HOST_LABEL_ORDER = ("p2p_host", "unknown", "normal_host")
LABEL_COLORS = {"p2p_likely": "#c53030", "unknown": "#d69e2e", "normal_likely": "#38a169"}
DISCOVERY = ("dht", "tracker", "lsd")
#: Above this many flows, the per-flow table lists only the flows shown in detail and the rest
#: is aggregated by (label, protocol, service port).
FLOW_TABLE_LIMIT = 5000


@dataclass
class Options:
    top: int = 50
    top_hosts: int = 20
    named: Sequence[str] = ()
    compare: Sequence[tuple[str, str]] = ()
    title: str = "msewatch report"


@dataclass
class FlowCard:
    flow: dict
    anchor: str
    why: str  # why it is shown: named, flagged, missed, false positive, compared
    truth: str | None
    has_evidence: bool
    bursts_svg: Markup
    popcount_svg: Markup
    score_svg: Markup
    facts: list[tuple[str, str]] = field(default_factory=list)
    bands_apply: bool = True


def _spread(values: list[float]) -> dict:
    return {"n": len(values), "median": statistics.median(values) if values else None, "p90": percentile(values, 90)}


def anchor(prefix: str, s: str) -> str:
    return prefix + "-" + "".join(c if c.isalnum() else "-" for c in s)


def utc(ts: float | None, ms: bool = True) -> str:
    """Epoch seconds as a UTC time for tables: 2026-11-22 02:51:31.124."""
    if ts is None:
        return "–"
    from datetime import datetime, timezone

    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    return d.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if ms else d.strftime("%Y-%m-%d %H:%M:%S")


def mse_bands_apply(f: dict) -> bool:
    """The MSE spec bands answer "is this an MSE handshake?": asked of TCP flows guessed bt_mse
    or with no protocol recognised, not of trackers, DHT, TLS and the like."""
    return f.get("proto") == "tcp" and vf.protocol(f) in ("bt_mse", vf.UNKNOWN_PROTOCOL)


def families_str(f: dict) -> tuple[str, str]:
    own, ctx = vf.families(f)
    return ", ".join(own) or "–", ", ".join(ctx) or "–"


def tuple_str(f: dict) -> str:
    o, r = f["orig_h"], f["resp_h"]
    o = f"[{o}]" if ":" in o else o
    r = f"[{r}]" if ":" in r else r
    return f"{f['proto']} {o}:{f['orig_p']} → {r}:{f['resp_p']}"


def is_encrypted(f: dict) -> bool:
    """An encrypted peer-like flow: the MSE guess, or the fully-encrypted (randomness) family
    contributed to its score (families list only positive contributions)."""
    return f.get("protocol") == "bt_mse" or "randomness" in f.get("families", ())


# ------------------------------------------------------------------------------ summary
def summarize(flows: list[dict], hosts: list[dict]) -> dict:
    """One pass over every flow: counts, latency lists, probability histogram."""
    by_lp: Counter = Counter()
    lat_pk: dict[str, list[float]] = defaultdict(list)
    lat_s: dict[str, list[float]] = defaultdict(list)
    edges = [i / 20 for i in range(21)]
    hist: dict[str, list[int]] = {lab: [0] * 20 for lab in LABEL_ORDER}
    encrypted = 0
    for f in flows:
        lab = f["label"]
        proto = f.get("protocol")
        by_lp[(vf.protocol(f), lab)] += 1
        n = f.get("decided_at_packet")
        if n:
            lat_pk[lab].append(n)
        d = f.get("decided_at")
        if d is not None:
            lat_s[lab].append(max(0.0, d - f["ts"]))
        h = hist.get(lab)
        if h is not None:
            h[min(19, int(f["probability"] * 20))] += 1
        if proto == "bt_mse" or "randomness" in f.get("families", ()):
            encrypted += 1
    by_label: Counter = Counter()
    for (_, lab), n in by_lp.items():
        by_label[lab] += n
    lat_pk["all"] = [x for v in list(lat_pk.values()) for x in v]
    lat_s["all"] = [x for v in list(lat_s.values()) for x in v]
    protocols = sorted({p for p, _ in by_lp}, key=lambda p: (p == vf.UNKNOWN_PROTOCOL, p))
    lp_rows = [(p, [by_lp.get((p, lab), 0) for lab in LABEL_ORDER], sum(by_lp.get((p, lab), 0) for lab in LABEL_ORDER))
               for p in protocols]
    final: dict[tuple, dict] = {}
    ever: set[tuple] = set()
    for h in hosts:
        k = (h.get("pcap", ""), h["host"])
        final[k] = h
        if h["label"] == "p2p_host":
            ever.add(k)
    host_labels = Counter(h["label"] for h in final.values())
    latency = [(lab, _spread(lat_pk[lab]), _spread(lat_s[lab])) for lab in LABEL_ORDER + ("all",) if lat_s[lab]]
    stacks = {lab: v for lab, v in hist.items() if by_label.get(lab)}
    return {
        "flows": len(flows),
        "hosts": len(final),
        "by_label": [(lab, by_label.get(lab, 0)) for lab in LABEL_ORDER],
        "label_protocol": lp_rows,
        "host_labels": [(lab, host_labels.get(lab, 0)) for lab in HOST_LABEL_ORDER],
        "hosts_ever_p2p": len(ever),
        "latency": latency,
        "unknown_share": by_label.get("unknown", 0) / len(flows) if flows else None,
        "encrypted_flows": encrypted,
        "hist": (stacks, edges),
    }


# ------------------------------------------------------------------------------ selection
def select_flows(flows: list[dict], opts: Options, truth: Truth | None) -> list[tuple[dict, str]]:
    by_uid = {f["uid"]: f for f in flows}
    chosen: dict[str, str] = {}
    for u in opts.named:
        if u in by_uid:
            chosen[u] = "named"
    ranked = sorted(
        (f for f in flows if f["label"] != "normal_likely" or (truth and f["uid"] in truth.misses)),
        key=lambda f: -f["probability"],
    )
    budget = opts.top
    if truth:  # labelled mistakes first: they are what a reader of a labelled report looks for
        for f in flows:
            if budget <= 0:
                break
            u = f["uid"]
            if u in truth.misses and u not in chosen:
                chosen[u] = "missed"
                budget -= 1
            elif u in truth.false_positives and u not in chosen:
                chosen[u] = "false positive"
                budget -= 1
    for f in _interleave(ranked):
        if budget <= 0:
            break
        if f["uid"] not in chosen:
            chosen[f["uid"]] = "flagged" if f["label"] == "p2p_likely" else f["label"]
            budget -= 1
    return [(by_uid[u], why) for u, why in chosen.items()]


#: which kinds of flagged flows come first when the detail budget is short: encrypted ones are
#: what the engine is for; a swarm's hundred tracker announces should not crowd them out
_KIND_ORDER = ("bt_mse", "unknown", "utp", "bt_plain", "dht", "lsd", "tracker")


def _interleave(ranked: list[dict]) -> list[dict]:
    """Flows by P within each (label, protocol) group, taken round-robin across the groups
    (encrypted first), so the top N shows every kind of flagged flow."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for f in ranked:
        groups[(f["label"] != "p2p_likely", vf.protocol(f))].append(f)

    def order(k: tuple) -> tuple:
        return (k[0], _KIND_ORDER.index(k[1]) if k[1] in _KIND_ORDER else len(_KIND_ORDER), k[1])

    queues = [groups[k] for k in sorted(groups, key=order)]
    out: list[dict] = []
    i = 0
    while queues:
        q = queues[i % len(queues)]
        out.append(q.pop(0))
        if not q:
            queues.remove(q)
        else:
            i += 1
    return out


#: At most this many non-P2P flows are examined for the default comparison partner.
COMPARE_CANDIDATES = 5000


def comparison_candidates(flows: list[dict]) -> set[str]:
    """Flows not labelled P2P that may partner the top MSE flow: those the engine already found
    random-looking, else the most suspicious ones by flow probability (bounded)."""
    rest = [f for f in flows if f["label"] != "p2p_likely"]
    rnd = [f for f in rest if "randomness" in f.get("families", ())]
    pool = rnd or rest
    if len(pool) > COMPARE_CANDIDATES:
        pool = heapq.nlargest(COMPARE_CANDIDATES, pool, key=lambda f: f.get("flow_probability", f["probability"]))
    return {f["uid"] for f in pool}


def default_comparison(flows: list[dict], heads: dict[str, bytes], band: tuple[float, float]) -> tuple[str, str] | None:
    """The top MSE flow vs the most random-looking flow not labelled P2P (first orig payload)."""
    from ..detect.params import DetectParams
    from ..detect.randomness import printable_count, random_verdict

    mse = [f for f in flows if f.get("protocol") == "bt_mse"] or [f for f in flows if f["label"] == "p2p_likely"]
    if not mse:
        return None
    top = max(mse, key=lambda f: f["probability"])
    p = DetectParams(popcount_low=band[0], popcount_high=band[1])
    best, best_key = None, None
    for f in flows:
        h = heads.get(f["uid"])
        if f["label"] == "p2p_likely" or f["uid"] == top["uid"] or not h:
            continue
        v = random_verdict(h, p)
        # random by the GFW rule first; then the least printable, then popcount nearest 4.0
        k = (not v.random, v.exemption == "too_short", round(printable_count(h) / len(h), 2),
             abs(v.popcount - 4.0), -len(h))
        if best_key is None or k < best_key:
            best, best_key = f, k
    return (top["uid"], best["uid"]) if best else None


# ------------------------------------------------------------------------------ flow cards
def _heads(ev: dict | None) -> list[tuple[str, bytes]]:
    if not ev:
        return []
    out = []
    for side in ("orig", "resp"):
        hs = ev.get(f"{side}_heads") or []
        if hs:
            out.append((side, bytes.fromhex(hs[0])))
    return out


def flow_card(f: dict, why: str, ev: dict | None, inp: ReportInput, truth: Truth | None, prefix: str) -> FlowCard:
    from ..detect.params import DetectParams
    from ..detect.randomness import random_verdict

    uid = f["uid"]
    applies = mse_bands_apply(f)
    bands = (charts.MseBands(**inp.mse_bands) if inp.mse_bands else charts.MseBands()) if applies else None
    p = DetectParams(popcount_low=inp.popcount_band[0], popcount_high=inp.popcount_band[1])
    heads = []
    for side, h in _heads(ev):
        v = random_verdict(h, p)
        heads.append((side, h, "random" if v.random else (v.exemption or "")))
    bursts = ev.get("bursts", []) if ev else []
    sizes = ev.get("sizes", []) if ev else []
    n_packets = len(sizes)
    a = anchor(prefix, uid)
    t_low, t_high = inp.thresholds
    own, ctx = families_str(f)
    facts = [
        ("flow", tuple_str(f)),
        ("started", utc(f.get("ts"))),
        ("label / protocol", f"{f['label']} / {vf.protocol(f)}"),
        ("P / P_flow / S_host", f"{f['probability']:.4f} / {f.get('flow_probability', 0):.4f} / {f.get('host_score', 0):.2f}"),
        ("decided", f"at payload packet {f.get('decided_at_packet', 0)}, "
                    f"+{(f.get('decided_at', f['ts']) - f['ts']) * 1000:.1f} ms"),
        ("own families", own),
        ("context families", ctx),
    ]
    if bands is not None:
        fits = bands.fits(bursts)
        facts.append(("MSE bursts 1–4 in range", f"{sum(fits)}/{len(fits)}" if fits else "–"))
    pcap = f.get("pcap") or f.get("_pcap")
    if pcap:
        facts.append(("pcap", pcap))
    if ev:
        facts.append(("packets / bytes", f"{ev.get('orig_pkts', 0)}↑ {ev.get('resp_pkts', 0)}↓ / "
                                         f"{ev.get('orig_bytes', 0)}↑ {ev.get('resp_bytes', 0)}↓"))
    t = truth.truth_by_uid.get(uid) if truth else None
    if t:
        facts.append(("ground truth", t))
    return FlowCard(
        flow=f,
        anchor=a,
        why=why,
        truth=t,
        has_evidence=ev is not None,
        bursts_svg=Markup(charts.bursts_chart(
            f"{a}-bursts", bursts, sizes, bands,
            f"Direction bursts and first payload sizes of {uid}: bars up = orig→resp, down = resp→orig"
            + ("; green bands = MSE/PE spec ranges of steps 1–4" if bands is not None else ""),
            no_bands_reason=(f"protocol {vf.protocol(f)}" if f.get("proto") == "tcp" else f"{f.get('proto')} flow"))),
        popcount_svg=Markup(charts.popcount_chart(
            f"{a}-popcount", heads, *inp.popcount_band,
            title=f"Popcount per byte of the first payloads of {uid}: random bytes settle at 4.0 inside the "
                  f"fully-encrypted band {inp.popcount_band[0]}–{inp.popcount_band[1]}")),
        score_svg=Markup(charts.score_path_chart(f"{a}-score", f.get("score_path", []), t_low, t_high,
                                                 f.get("decided_at_packet", 0), n_packets,
                                                 f"Score path of {uid}: P after each scored prefix against "
                                                 f"T_low {t_low:g} and T_high {t_high:g}")),
        facts=facts,
        bands_apply=bands is not None,
    )


# ------------------------------------------------------------------------------ hosts
_NICE = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


def _bucket(span: float, max_buckets: int = 60) -> float:
    for b in _NICE:
        if span / b <= max_buckets:
            return float(b)
    return float(math.ceil(span / max_buckets))


def host_cards(flows: list[dict], hosts: list[dict], opts: Options) -> tuple[list[dict], list[dict]]:
    """Host timelines for the top hosts (flagged first, by score); the rest as table rows."""
    final: dict[tuple, dict] = {}
    history: dict[tuple, list[dict]] = defaultdict(list)
    for h in hosts:
        k = (h.get("pcap", ""), h["host"])
        final[k] = h
        history[k].append(h)
    order = sorted(final, key=lambda k: (HOST_LABEL_ORDER.index(final[k]["label"])
                                         if final[k]["label"] in HOST_LABEL_ORDER else 3, -final[k]["score"]))
    shown = order[: opts.top_hosts]
    want = {k[1] for k in shown}
    mine: dict[tuple, list[tuple[dict, str]]] = defaultdict(list)  # host -> (flow, remote ip)
    for f in flows:
        pc = f.get("pcap", "")
        for me, other in ((f["orig_h"], f["resp_h"]), (f["resp_h"], f["orig_h"])):
            if me in want and (pc, me) in final:
                mine[(pc, me)].append((f, other))
    cards = []
    for k in shown:
        h = final[k]
        fl = sorted(mine.get(k, []), key=lambda x: x[0]["ts"])
        cards.append(_host_card(k, h, history[k], fl))
    rest = [final[k] for k in order[opts.top_hosts:]]
    return cards, rest


def _host_card(k: tuple, h: dict, history: list[dict], fl: list[tuple[dict, str]]) -> dict:
    pcap, host = k
    a = anchor("host", f"{pcap}-{host}" if pcap else host)
    t0 = fl[0][0]["ts"] if fl else h["ts"]
    t_end = max([f["ts"] for f, _ in fl] + [hh["ts"] for hh in history] + [t0])
    span = max(t_end - t0, 10.0)
    b = _bucket(span)
    nb = int(span // b) + 1
    new = [0] * nb
    peer_series = []
    rows: dict[str, tuple[list[float], list[str]]] = {
        "discovery": ([], []), "encrypted": ([], []), "other P2P": ([], []), "host → p2p_host": ([], []),
    }
    for f, other in fl:
        t = f["ts"] - t0
        new[min(nb - 1, int(t // b))] += 1
        proto = f.get("protocol")
        label = f"{proto or f['label']} {tuple_str(f)} P={f['probability']:.2f}"
        if proto in DISCOVERY:
            row = "discovery"
        elif is_encrypted(f):
            row = "encrypted"
        elif f["label"] == "p2p_likely":
            row = "other P2P"
        else:
            continue
        rows[row][0].append(t)
        rows[row][1].append(label)
    prev = None
    for hh in history:
        if hh["label"] == "p2p_host" and prev != "p2p_host":
            rows["host → p2p_host"][0].append(hh["ts"] - t0)
            rows["host → p2p_host"][1].append(f"score {hh['score']:.2f}")
        prev = hh["label"]
    notes = []
    for width, color, name in ((10.0, "#805ad5", "per 10 s"), (120.0, "#2c7a7b", "per 2 min")):
        n = int(span // width) + 1
        if n > 5000:
            notes.append(f"distinct remote IPs {name} not drawn: {n} buckets")
            continue
        sets: list[set[str]] = [set() for _ in range(n)]
        for f, other in fl:
            sets[min(n - 1, int((f["ts"] - t0) // width))].add(other)
        peer_series.append(charts.Series(f"remote IPs {name}", width, [len(s) for s in sets], color))
    colors = {"discovery": "#3182ce", "encrypted": "#c53030", "other P2P": "#d69e2e", "host → p2p_host": "#1a202c"}
    events = [charts.EventRow(name, ts, colors[name], labs) for name, (ts, labs) in rows.items()]
    svg = charts.host_timeline_chart(
        f"{a}-timeline", span, charts.Series("new flows", b, new, "#4a5568"), peer_series, events,
        f"Timeline of host {host}" + (f" ({pcap})" if pcap else ""),
    )
    remotes = {o for _, o in fl}
    return {
        "anchor": a,
        "host": host,
        "pcap": pcap,
        "verdict": h,
        "history": [(hh["ts"] - t0, hh["label"], hh["score"]) for hh in history],
        "flows": len(fl),
        "remotes": len(remotes),
        "discovery": len(rows["discovery"][0]),
        "encrypted": len(rows["encrypted"][0]),
        "svg": Markup(svg),
        "notes": notes,
    }


# ------------------------------------------------------------------------------ whole report
def local_host(f: dict, known: set[tuple[str, str]]) -> str:
    """The flow's end that is a scored (local) host: orig first, else resp, else orig."""
    pc = f.get("pcap", "")
    for h in (f["orig_h"], f["resp_h"]):
        if (pc, h) in known:
            return h
    return f["orig_h"]


def group_cards(cards: list[FlowCard], hosts: list[dict], host_anchor: dict) -> list[dict]:
    """Flow cards grouped by (pcap, local host), the group of a named flow first, then by how
    many flagged flows a group holds."""
    known = {(h.get("pcap", ""), h["host"]) for h in hosts}
    groups: dict[tuple, list[FlowCard]] = {}
    for c in cards:
        k = (c.flow.get("pcap", ""), local_host(c.flow, known))
        groups.setdefault(k, []).append(c)
    out = []
    for (pcap, host), cs in groups.items():
        labels = Counter(c.flow["label"] for c in cs)
        out.append({
            "host": host, "pcap": pcap, "cards": cs, "labels": [(lab, labels[lab]) for lab in LABEL_ORDER if labels[lab]],
            "open": any(c.why == "named" for c in cs), "anchor": anchor("group", f"{pcap}-{host}"),
            "host_anchor": host_anchor.get((pcap, host)),
            "protocols": sorted({vf.protocol(c.flow) for c in cs}),
        })
    out.sort(key=lambda g: (not g["open"], -sum(n for lab, n in g["labels"] if lab != "normal_likely"), g["host"]))
    return out


def flow_row(f: dict) -> dict:
    """What the flow tables show of a flow."""
    own, ctx = families_str(f)
    return {"f": f, "time": utc(f.get("ts")), "pcap": f.get("pcap") or f.get("_pcap") or "–",
            "protocol": vf.protocol(f), "own": own, "ctx": ctx}


def _date_note(flows: list[dict]) -> str:
    """Tables show the time of day; the date goes in the column head (or on hover if several)."""
    if not flows:
        return "UTC"
    lo, hi = utc(min(f["ts"] for f in flows))[:10], utc(max(f["ts"] for f in flows))[:10]
    return f"UTC {lo}" if lo == hi else "UTC; date on hover"


def aggregate_rest(flows: list[dict], shown: set[str]) -> list[tuple]:
    """Flows not shown in detail, by (label, protocol, service port)."""
    c: Counter = Counter()
    pmax: dict[tuple, float] = {}
    for f in flows:
        if f["uid"] in shown:
            continue
        k = (f["label"], vf.protocol(f), f"{f['proto']}/{f['resp_p']}" if f["resp_p"] < 1024 else f"{f['proto']}/high")
        c[k] += 1
        pmax[k] = max(pmax.get(k, 0.0), f["probability"])
    return [(*k, n, pmax[k]) for k, n in sorted(c.items(), key=lambda x: (-x[1], x[0]))[:200]]


def build(inp: ReportInput, opts: Options, truth: Truth | None = None) -> dict:
    flows = inp.flows
    selected = select_flows(flows, opts, truth)
    by_uid = {f["uid"]: f for f in flows}
    compare = [(a, b) for a, b in opts.compare]
    for a, b in compare:
        for u in (a, b):
            if u not in by_uid:
                from .inputs import ReportError

                raise ReportError(f"--compare: no flow with uid {u!r}")
    missing_named = [u for u in opts.named if u not in by_uid]
    need = {f["uid"] for f, _ in selected} | {u for pair in compare for u in pair}
    heads_of: set[str] = set()
    if not compare:
        heads_of = comparison_candidates(flows)
    ev, heads = inp.evidence.fetch(need, heads_of)
    if len(ev) < len(need) and hasattr(inp.evidence, "key_to_uid"):
        enable_key_join(inp)
        ev, heads = inp.evidence.fetch(need, heads_of)
    default_pair = False
    if not compare:
        pair = default_comparison(flows, heads, inp.popcount_band)
        if pair:
            compare = [pair]
            default_pair = True
            extra, _ = inp.evidence.fetch(set(pair) - set(ev), set())
            ev.update(extra)
    cards = [flow_card(f, why, ev.get(f["uid"]), inp, truth, "flow") for f, why in selected]
    comparisons = [
        [flow_card(by_uid[u], "compared", ev.get(u), inp, truth, f"cmp{i}") for u in pair]
        for i, pair in enumerate(compare)
    ]
    hcards, hrest = host_cards(flows, inp.hosts, opts)
    groups = group_cards(cards, inp.hosts, {(h["pcap"], h["host"]): h["anchor"] for h in hcards})
    group_by_host = {(g["pcap"], g["host"]): g["anchor"] for g in groups}
    for h in hcards:
        h["group"] = group_by_host.get((h["pcap"], h["host"]))
    summary = summarize(flows, inp.hosts)
    stacks, edges = summary["hist"]
    hist_svg = Markup(charts.histogram_chart(
        "summary-probability", stacks, LABEL_COLORS, edges, "Flow probability P by final label", "P",
        [(inp.thresholds[0], "T_low"), (inp.thresholds[1], "T_high")],
    ))
    shown = {c.flow["uid"] for c in cards}
    table_all = len(flows) <= FLOW_TABLE_LIMIT
    return {
        "title": opts.title,
        "sources": inp.sources,
        "summary": summary,
        "hist_svg": hist_svg,
        "thresholds": inp.thresholds,
        "popcount_band": inp.popcount_band,
        "mse_bands": charts.MseBands(**inp.mse_bands) if inp.mse_bands else charts.MseBands(),
        "cards": cards,
        "missing_named": missing_named,
        "comparisons": comparisons,
        "default_pair": default_pair,
        "hosts": hcards,
        "hosts_rest": hrest[:500],
        "hosts_rest_n": len(hrest),
        "truth": truth,
        "top": opts.top,
        "flow_table": ([flow_row(f) for f in sorted(flows, key=lambda f: (-f["probability"], f["ts"]))]
                       if table_all else []),
        "flow_index": [(c, flow_row(c.flow)) for c in cards],
        "date_note": _date_note(flows),
        "groups": groups,
        "group_of": {c.flow["uid"]: g["anchor"] for g in groups for c in g["cards"]},
        "flow_table_all": table_all,
        "aggregate": [] if table_all else aggregate_rest(flows, shown),
        "shown": shown,
        "anchors": {c.flow["uid"]: c.anchor for c in cards},
        "tuple_str": tuple_str,
        "label_colors": LABEL_COLORS,
    }


def render(ctx: dict) -> str:
    from jinja2 import Environment, StrictUndefined

    from .. import __version__

    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    tpl_text = resources.files("msewatch.report").joinpath("templates/report.html.j2").read_text()
    css = resources.files("msewatch.report").joinpath("templates/report.css").read_text()
    env.filters["fmt"] = _fmt
    env.filters["basename"] = os.path.basename
    return env.from_string(tpl_text).render(**ctx, css=Markup(css), version=__version__)


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:.{digits}f}"
    return str(v)
