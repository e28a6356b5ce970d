"""`msewatch report`: one self-contained HTML file explaining the engine's verdicts.

    msewatch report PCAP... -o report.html [--labels labels.csv [--hosts hosts.csv]]
    msewatch report --verdicts verdicts.jsonl --evidence evidence.jsonl -o report.html

Summary, flow cards (bursts against the MSE spec ranges, popcount of the heads against the
fully-encrypted band, the score path against T_low/T_high, the reasons), host timelines and
a side-by-side comparison, all as inline SVG: nothing is fetched when the file is opened and
no JavaScript is needed. docs/report.md describes every chart.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

EXIT_OK, EXIT_ERROR, EXIT_INPUT = 0, 1, 2

__all__ = ["main_report", "build_report", "write_report"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msewatch report",
        description="Write a self-contained HTML report of msewatch verdicts (from pcaps, or from "
        "`msewatch analyze` JSON lines plus `msewatch evidence` JSON lines).",
    )
    p.add_argument("pcap", nargs="*", help="pcap/pcapng files to analyze (or use --verdicts)")
    p.add_argument("-o", "--output", default="msewatch-report.html", help="HTML file to write (default: %(default)s)")
    p.add_argument("--verdicts", help="verdict JSON lines from `msewatch analyze` (instead of pcaps)")
    p.add_argument("--evidence", help="evidence JSON lines from `msewatch evidence` on the same pcaps")
    p.add_argument("--labels", help="labels.csv (pcap,proto,orig_h,orig_p,resp_h,resp_p,label,protocol,client,server)")
    p.add_argument("--hosts", help="hosts.csv (pcap,host,role) for the host-level ground truth")
    p.add_argument("--flow", action="append", default=[], metavar="UID", help="show this flow in detail (repeatable)")
    p.add_argument("--compare", action="append", default=[], metavar="UID1,UID2",
                   help="show two flows side by side (repeatable; default: top MSE flow vs the most "
                   "random-looking non-P2P flow)")
    p.add_argument("--top", type=int, default=50, help="flows shown in detail (default: %(default)s)")
    p.add_argument("--top-hosts", type=int, default=20, help="hosts with a timeline (default: %(default)s)")
    p.add_argument("--joint", action="store_true",
                   help="one engine over all pcaps, as `msewatch analyze` does (default: a fresh engine per pcap, as `msewatch eval` does)")
    p.add_argument("-c", "--config", help="YAML config (default: the bundled one)")
    p.add_argument("--title", default="msewatch report", help="the page title (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    return p


def build_report(
    pcaps: Sequence[str] = (),
    *,
    verdicts: str | None = None,
    evidence: str | None = None,
    labels: str | None = None,
    hosts: str | None = None,
    flows: Sequence[str] = (),
    compare: Sequence[tuple[str, str]] = (),
    top: int = 50,
    top_hosts: int = 20,
    joint: bool = False,
    cfg=None,
    title: str = "msewatch report",
) -> str:
    """The report's HTML as a string. Raises ReportError on bad input."""
    from .build import Options, build, render
    from .inputs import ReportError, from_jsonl, from_pcaps
    from .labels import compute

    if verdicts and pcaps:
        raise ReportError("give either pcaps or --verdicts, not both")
    if not verdicts and not pcaps:
        raise ReportError("nothing to report: give pcaps or --verdicts FILE")
    if evidence and not verdicts:
        raise ReportError("--evidence goes with --verdicts (with pcaps the evidence is recorded directly)")
    inp = from_jsonl(verdicts, evidence, cfg) if verdicts else from_pcaps(pcaps, cfg, joint=joint)
    truth = compute(inp.flows, inp.hosts, labels, hosts) if labels else None
    opts = Options(top=top, top_hosts=top_hosts, named=list(flows), compare=list(compare), title=title)
    return render(build(inp, opts, truth))


def write_report(path: str, html: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(html)
    os.replace(tmp, path)


def main_report(argv: list[str]) -> int:
    from ..config import ConfigError, load_config
    from .inputs import ReportError

    args = _parser().parse_args(argv)
    pairs = []
    for c in args.compare:
        parts = [s.strip() for s in c.split(",")]
        if len(parts) != 2 or not all(parts):
            print(f"msewatch report: error: --compare wants UID1,UID2, got {c!r}", file=sys.stderr)
            return EXIT_ERROR
        pairs.append((parts[0], parts[1]))
    if args.top < 0 or args.top_hosts < 0:
        print("msewatch report: error: --top and --top-hosts must be >= 0", file=sys.stderr)
        return EXIT_ERROR
    t0 = time.perf_counter()
    try:
        cfg = load_config(args.config)
        html = build_report(
            args.pcap, verdicts=args.verdicts, evidence=args.evidence, labels=args.labels, hosts=args.hosts,
            flows=args.flow, compare=pairs, top=args.top, top_hosts=args.top_hosts, joint=args.joint,
            cfg=cfg, title=args.title,
        )
        write_report(args.output, html)
    except (ReportError, ConfigError) as e:
        print(f"msewatch report: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as e:
        print(f"msewatch report: error: {args.output}: {e.strerror}", file=sys.stderr)
        return EXIT_ERROR
    if not args.quiet:
        print(f"msewatch report: wrote {args.output} ({len(html) / 1024:.0f} KiB) in "
              f"{time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return EXIT_OK
