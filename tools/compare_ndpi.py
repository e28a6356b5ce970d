#!/usr/bin/env python3
"""msewatch next to nDPI on the labelled corpus; rewrites the generated part of docs/evaluation.md.

    python tools/compare_ndpi.py                    # tests/data/corpus, writes docs/evaluation.md
    python tools/compare_ndpi.py --no-write PCAP... # print only

nDPI runs as `ndpiReader -q -v 2 -i FILE` (Debian libndpi-bin 4.2): that output lists every flow,
detected or not, with its 5-tuple, `[proto: M.A/Master.App]` and `[Confidence: ...]`. (The `-C`
CSV of 4.2 leaves undetected flows out, so it cannot tell "Unknown" from "not seen".)
Mapping to our classes: BitTorrent anywhere in the name -> p2p_likely; Unknown -> unknown;
anything else -> normal_likely. nDPI has no per-protocol split of BitTorrent (MSE, plain,
uTP, DHT and tracker are all "BitTorrent"), so its guess accuracy is not scored. Two nDPI
columns are shown: everything it reports, and DPI-only, where flows it matched only by port
or IP (`Confidence: Match by port` / `Match by IP`) count as unknown, the same as `ndpiReader -d`
would leave them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bridge"))

from msewatch import evaluate as ev  # noqa: E402

DEFAULT_CORPUS = ROOT / "tests" / "data" / "corpus"
DEFAULT_DOC = ROOT / "docs" / "evaluation.md"
START, END = "<!-- generated:start -->", "<!-- generated:end -->"
GUESS_CONFIDENCES = ("Match by port", "Match by IP")

_FLOW = re.compile(
    r"^\s*\d+\s+(?P<proto>TCP|UDP)\s+(?P<a>\S+)\s+<?->\s+(?P<b>\S+)\s+"
    r"\[proto: (?P<num>[\d.]+)/(?P<name>[^\]]+)\](?:.*?\[Confidence: (?P<conf>[^\]]+)\])?"
)


@dataclass(frozen=True)
class NdpiFlow:
    proto: str
    src: tuple[str, int]
    dst: tuple[str, int]
    name: str  # e.g. BitTorrent, TLS.Google, Unknown
    confidence: str


def _endpoint(tok: str) -> tuple[str, int]:
    host, _, port = tok.rpartition(":")
    return host.strip("[]"), int(port)


def parse_ndpi(text: str) -> list[NdpiFlow]:
    """Flows of `ndpiReader -v 2` output; a flow repeated in the 'Undetected flows' list counts once."""
    out: list[NdpiFlow] = []
    seen: set[tuple] = set()
    for line in text.splitlines():
        m = _FLOW.match(line)
        if not m:
            continue
        src, dst = _endpoint(m["a"]), _endpoint(m["b"])
        key = (m["proto"], src, dst)
        if key in seen:
            continue
        seen.add(key)
        out.append(NdpiFlow(m["proto"].lower(), src, dst, m["name"], (m["conf"] or "").strip()))
    return out


def ndpi_version(binary: str) -> str:
    r = subprocess.run([binary, "-h"], capture_output=True, text=True)
    m = re.search(r"nDPI (\d[\w.\-]*)", r.stdout + r.stderr)
    return m.group(1) if m else "unknown"


def run_ndpi(binary: str, pcap: Path) -> list[NdpiFlow]:
    r = subprocess.run([binary, "-q", "-v", "2", "-i", str(pcap)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"compare_ndpi: {binary} failed on {pcap} (exit {r.returncode}): {r.stderr.strip()[:500]}")
    return parse_ndpi(r.stdout)


def ndpi_class(name: str) -> str:
    parts = name.split(".")
    if "BitTorrent" in parts:
        return ev.P2P_LIKELY
    if parts[0] == "Unknown" and all(p == "Unknown" for p in parts):
        return ev.UNKNOWN
    return ev.NORMAL_LIKELY


def to_predictions(pcap: str, flows: list[NdpiFlow], dpi_only: bool) -> list[ev.FlowPrediction]:
    out = []
    for f in flows:
        label = ndpi_class(f.name)
        if dpi_only and f.confidence in GUESS_CONFIDENCES:
            label = ev.UNKNOWN
        out.append(ev.FlowPrediction(pcap, f.proto, f.src[0], f.src[1], f.dst[0], f.dst[1], label, None,
                                     None, None, (f"ndpi={f.name}", f"confidence={f.confidence}")))
    return out


# ---------------------------------------------------------------------------------- tables
def side_by_side(ours: ev.EvalReport, nd: ev.EvalReport, nd_dpi: ev.EvalReport) -> str:
    head = ["class", "flows", "msewatch recall", "nDPI recall", "nDPI DPI-only recall",
            "msewatch unknown", "nDPI unknown", "nDPI DPI-only unknown"]
    rows = []
    for c in ev.P2P_CLASSES:
        o, n, d = ours.classes[c], nd.classes[c], nd_dpi.classes[c]
        if not o.flows:
            rows.append([c, 0, None, None, None, None, None, None])
            continue
        rows.append([c, o.flows, o.recall, n.recall, d.recall, o.unknown, n.unknown, d.unknown])
    oo, no, do = ours.overall_p2p, nd.overall_p2p, nd_dpi.overall_p2p
    unk = lambda r: sum(c.unknown for k, c in r.classes.items() if k != ev.NEGATIVE)  # noqa: E731
    rows.append(["**all P2P**", oo["flows"], oo["recall"], no["recall"], do["recall"], unk(ours), unk(nd), unk(nd_dpi)])
    t1 = ev._table(head, rows)

    head2 = ["negatives", "flows", "msewatch FP rate", "nDPI FP rate", "nDPI DPI-only FP rate",
             "msewatch unknown", "nDPI unknown", "nDPI DPI-only unknown"]
    rows2 = []
    o, n, d = ours.classes[ev.NEGATIVE], nd.classes[ev.NEGATIVE], nd_dpi.classes[ev.NEGATIVE]
    rows2.append(["**all negatives**", o.flows, o.fp_rate, n.fp_rate, d.fp_rate, o.unknown, n.unknown, d.unknown])
    for p in sorted(set(ours.negatives_by_protocol) | set(nd.negatives_by_protocol)):
        a = ours.negatives_by_protocol.get(p, {})
        b = nd.negatives_by_protocol.get(p, {})
        c = nd_dpi.negatives_by_protocol.get(p, {})
        rows2.append([p, a.get("flows", 0), a.get("fp_rate"), b.get("fp_rate"), c.get("fp_rate"),
                      a.get("unknown", 0), b.get("unknown", 0), c.get("unknown", 0)])
    t2 = ev._table(head2, rows2)
    return t1 + "\n\n" + t2


def ndpi_names_table(labels: list[ev.LabelRow], per_pcap: dict[str, list[NdpiFlow]]) -> str:
    """What nDPI called the flows of each of our classes (name and confidence)."""
    idx: dict[tuple, NdpiFlow] = {}
    for pcap, flows in per_pcap.items():
        for f in flows:
            idx[(pcap, f.proto, *f.src, *f.dst)] = f
            idx[(pcap, f.proto, *f.dst, *f.src)] = f
    counts: dict[tuple[str, str, str], int] = {}
    for r in labels:
        if r.truth is None or r.pcap not in per_pcap:
            continue
        truth = r.truth if r.truth != ev.NEGATIVE else f"normal/{r.protocol}"
        f = idx.get((r.pcap, r.proto, r.orig_h, r.orig_p, r.resp_h, r.resp_p))
        key = (truth, f.name if f else "(not listed)", f.confidence if f else "")
        counts[key] = counts.get(key, 0) + 1
    rows = [[t, n, c, k] for (t, n, c), k in sorted(counts.items())]
    return ev._table(["our class", "nDPI protocol", "nDPI confidence", "flows"], rows, "lllr")


def _demote(md: str) -> str:
    """Nest the report's headings one level deeper, under the doc's Results section."""
    return "\n".join("#" + ln if ln.startswith("###") else ln for ln in md.splitlines())


def generated_section(ours, nd, nd_dpi, labels, per_pcap, version: str, pcaps: list[Path]) -> str:
    counts = {c: ours.classes[c].flows for c in ev.CLASSES}
    corpus_line = ", ".join(f"{c} {n}" for c, n in counts.items() if n) or "empty"
    parts = [
        START,
        "<!-- Written by `python tools/compare_ndpi.py`; edits between these markers are overwritten. -->",
        "",
        f"Corpus: {len(pcaps)} pcaps, {ours.labelled_flows} labelled flows ({corpus_line}); "
        f"{len(ours.unlabeled)} flows without a label (not counted). nDPI {version} (`ndpiReader -q -v 2`).",
        "",
        "#### Side by side",
        "",
        side_by_side(ours, nd, nd_dpi),
        "",
        "#### What nDPI called each class",
        "",
        ndpi_names_table(labels, per_pcap),
        "",
        _demote(ev.report_markdown(ours, "msewatch (full report)")).rstrip(),
        "",
        "#### nDPI confusion matrix (everything nDPI reports)",
        "",
        ev.confusion_table(nd),
        "",
        "#### nDPI confusion matrix (DPI-only)",
        "",
        ev.confusion_table(nd_dpi),
        "",
        END,
    ]
    return "\n".join(parts)


def write_doc(doc: Path, section: str) -> None:
    text = doc.read_text() if doc.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + section + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pcap", nargs="*", help="pcaps (default: every *.pcap in --corpus)")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="directory with labels.csv/hosts.csv")
    ap.add_argument("--ndpi", default=shutil.which("ndpiReader") or "/usr/bin/ndpiReader", help="ndpiReader binary")
    ap.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="Markdown file with the generated markers")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the doc alone")
    ap.add_argument("--json", type=Path, help="also write both reports as JSON here")
    args = ap.parse_args(argv)

    pcaps = [Path(p) for p in args.pcap] or sorted(args.corpus.glob("*.pcap"))
    if not pcaps:
        print(f"compare_ndpi: no pcaps in {args.corpus}", file=sys.stderr)
        return 2
    if not Path(args.ndpi).exists() and not shutil.which(args.ndpi):
        print(f"compare_ndpi: {args.ndpi} not found (Debian: apt-get install libndpi-bin)", file=sys.stderr)
        return 2
    labels_path = args.corpus / "labels.csv"
    hosts_path = args.corpus / "hosts.csv"
    labels = ev.load_labels(labels_path)

    ours = ev.run_eval(pcaps, labels_path, hosts_path if hosts_path.is_file() else None)
    per_pcap = {p.name: run_ndpi(args.ndpi, p) for p in pcaps}
    names = [p.name for p in pcaps]
    nd = ev.evaluate([x for n, fl in per_pcap.items() for x in to_predictions(n, fl, False)], labels, pcaps=names)
    nd_dpi = ev.evaluate([x for n, fl in per_pcap.items() for x in to_predictions(n, fl, True)], labels, pcaps=names)

    version = ndpi_version(args.ndpi)
    print(side_by_side(ours, nd, nd_dpi))
    if args.json:
        import json

        args.json.write_text(json.dumps({"msewatch": ours.to_dict(), "ndpi": nd.to_dict(), "ndpi_dpi_only": nd_dpi.to_dict(),
                                         "ndpi_version": version}, indent=2, default=str))
    if not args.no_write:
        write_doc(args.doc, generated_section(ours, nd, nd_dpi, labels, per_pcap, version, pcaps))
        print(f"\nwrote the generated section of {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
