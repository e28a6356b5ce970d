"""`msewatch` command line: analyze, evidence, run, check-config, default-config, and
the entry points of EVE annotation (annotate), the rule pack (rules), eval and report."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from typing import IO, Callable, Sequence

import orjson

from . import __version__
from .config import ConfigError, default_config_text, load_config

EXIT_OK, EXIT_ERROR, EXIT_INPUT = 0, 1, 2


def _die(msg: str, code: int = EXIT_ERROR) -> int:
    print(f"msewatch: error: {msg}", file=sys.stderr)
    return code


def _open_out(path: str | None) -> IO[bytes]:
    if path in (None, "-"):
        return sys.stdout.buffer
    return open(path, "wb")


def _progress_factory(paths: Sequence[str], enabled: bool) -> tuple[Callable | None, Callable[[], None]]:
    """A tqdm bar over the input bytes; shown only when a run lasts over 2 seconds."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    total = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
    bar = tqdm(total=total, unit="B", unit_scale=True, delay=2.0, file=sys.stderr, desc="analyze", leave=False)
    read: dict[str, int] = {}

    def progress(path: str, stats) -> None:
        read[path] = stats.bytes_read
        bar.update(sum(read.values()) - bar.n)

    return progress, bar.close


def _summary(verdicts: list[dict], out: IO[str], top: int = 10) -> None:
    flows = [v for v in verdicts if v["type"] == "flow"]
    # a host is reported when its label changes and once at the end: show its last verdict
    hosts = list({v["host"]: v for v in verdicts if v["type"] == "host"}.values())
    labels = Counter(v["label"] for v in flows)
    protos = Counter((v["label"], v["protocol"] or "-") for v in flows if v["label"] != "normal_likely")
    w = out.write
    w(f"\nmsewatch summary: {len(flows)} flows, {len(hosts)} hosts\n")
    w(f"{'flow label':<16}{'count':>8}\n")
    for lab in ("p2p_likely", "unknown", "normal_likely"):
        w(f"{lab:<16}{labels.get(lab, 0):>8}\n")
    if protos:
        w(f"\n{'label':<16}{'protocol':<12}{'count':>8}\n")
        for (lab, pr), n in sorted(protos.items(), key=lambda x: (-x[1], x[0])):
            w(f"{lab:<16}{pr:<12}{n:>8}\n")
    flagged = sorted((h for h in hosts if h["label"] != "normal_host"), key=lambda h: -h["score"])[:top]
    if flagged:
        w(f"\n{'host':<40}{'label':<13}{'P':>6}  reasons\n")
        for h in flagged:
            why = " ".join(r for r in h["reasons"] if not r.endswith("=0") and not r.endswith("=0.0"))
            w(f"{h['host']:<40}{h['label']:<13}{h['probability']:>6.2f}  {why}\n")
    w("\n")


def cmd_analyze(args: argparse.Namespace) -> int:
    from .engine import Engine, run_pcaps
    from .sources.pcap import PcapError

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        return _die(str(e))
    for p in args.pcap:
        if not os.path.exists(p):
            return _die(f"{p}: no such file", EXIT_INPUT)
    engine = Engine(cfg)
    fmt = _formatter(args.format)
    out = _open_out(args.output)
    progress, close_bar = _progress_factory(args.pcap, not args.no_progress and sys.stderr.isatty())
    collected: list[dict] = []
    read_stats: list = []
    rc = EXIT_OK

    def write(v) -> None:
        d = v.to_dict()
        collected.append(d)
        out.write(orjson.dumps(fmt(d)) + b"\n")

    try:
        try:
            for v in run_pcaps(args.pcap, engine, progress, read_stats):
                write(v)
        except PcapError as e:
            # keep what was decided; decide the open flows on the evidence they have
            for v in engine.flush():
                write(v)
            close_bar()
            rc = _die(str(e), EXIT_INPUT)
    finally:
        close_bar()
        out.flush()
        if out is not sys.stdout.buffer:
            out.close()
    if not args.quiet:
        _summary(collected, sys.stderr)
        for path, st in read_stats:
            bad = st.skipped_bad_header
            if bad or st.fragments:
                print(
                    f"{path}: {st.packets} packets, {bad} skipped with bad headers, {st.fragments} fragments skipped",
                    file=sys.stderr,
                )
    return rc


def cmd_evidence(args: argparse.Namespace) -> int:
    """Print the evidence the engine extracts per flow (the contract of docs/evidence.md)."""
    from .engine import extract_evidence
    from .sources.pcap import PcapError

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        return _die(str(e))
    try:
        evs = extract_evidence(args.pcap, cfg)
    except PcapError as e:
        return _die(str(e), EXIT_INPUT)
    out = _open_out(args.output)
    for ev in evs:
        out.write(orjson.dumps(evidence_to_dict(ev)) + b"\n")
    out.flush()
    return EXIT_OK


def evidence_to_dict(ev) -> dict:
    k = ev.key
    return {
        "uid": ev.uid,
        "community_id": ev.community_id,
        "proto": k.proto,
        "orig_h": k.orig_h,
        "orig_p": k.orig_p,
        "resp_h": k.resp_h,
        "resp_p": k.resp_p,
        "ts": ev.ts,
        "sizes": list(ev.sizes),
        "times": [round(t, 6) for t in ev.times],
        "bursts": list(ev.bursts),
        "orig_heads": [h.hex() for h in ev.orig_heads],
        "resp_heads": [h.hex() for h in ev.resp_heads],
        "orig_pkts": ev.orig_pkts,
        "resp_pkts": ev.resp_pkts,
        "orig_bytes": ev.orig_bytes,
        "resp_bytes": ev.resp_bytes,
        "duration": round(ev.duration, 6),
        "handshake": ev.handshake,
        "closed": ev.closed,
        "complete": ev.complete,
    }


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        load_config(args.config)
    except ConfigError as e:
        return _die(str(e))
    print(f"{args.config}: ok")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """The live bridge: evidence from Zeek in, verdicts to Zeek (and outputs) out."""
    from .bridge import main_run

    try:
        cfg = load_config(args.config)
        if args.shard:
            from .config import parse_config

            data = cfg.model_dump()
            data["zeek"]["shard"] = args.shard
            cfg = parse_config(data, "--shard")
    except ConfigError as e:
        return _die(str(e))
    return main_run(cfg, verdict_format=args.format)


def _formatter(fmt: str) -> Callable[[dict], dict]:
    """--format: msewatch (the verdict JSON as is) or ecs (Elastic Common Schema, docs/siem.md)."""
    from .ecs import formatter

    return formatter(fmt)


def _format_option(parser: argparse.ArgumentParser, what: str) -> None:
    from .ecs import FORMATS

    parser.add_argument("--format", choices=FORMATS, default="msewatch",
                        help=f"{what}: msewatch = the verdict JSON of docs/architecture.md, "
                        "ecs = Elastic Common Schema documents (docs/siem.md) (default: %(default)s)")


def cmd_default_config(args: argparse.Namespace) -> int:
    sys.stdout.write(default_config_text())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="msewatch", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"msewatch {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    a = sub.add_parser("analyze", help="run the engine on pcap/pcapng files; JSON lines out, summary on stderr")
    a.add_argument("pcap", nargs="+")
    a.add_argument("-o", "--output", help="write JSON lines here instead of stdout")
    a.add_argument("-c", "--config", help="YAML config (default: the bundled one)")
    a.add_argument("-q", "--quiet", action="store_true", help="no summary table on stderr")
    a.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    _format_option(a, "JSON lines written")
    a.set_defaults(func=cmd_analyze)

    e = sub.add_parser("evidence", help="print the per-flow evidence (docs/evidence.md) extracted from pcaps")
    e.add_argument("pcap", nargs="+")
    e.add_argument("-o", "--output")
    e.add_argument("-c", "--config")
    e.set_defaults(func=cmd_evidence)

    c = sub.add_parser("check-config", help="validate a YAML config and exit")
    c.add_argument("config")
    c.set_defaults(func=cmd_check_config)

    r = sub.add_parser("run", help="the live bridge: score evidence from Zeek and send verdicts back")
    r.add_argument("-c", "--config", help="YAML config (zeek:, metrics:, log:, outputs: sections)")
    r.add_argument("--shard", help='take only shard "i/N" of the evidence (overrides zeek.shard)')
    _format_option(r, "lines of outputs.verdicts_jsonl")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("default-config", help="print the bundled default config, documented line by line")
    d.set_defaults(func=cmd_default_config)

    for name, _module, _func, helptext in DELEGATED:
        sub.add_parser(name, help=helptext, add_help=False)  # listed in --help; run by main()
    return p


# Subcommands whose argument parsing lives with their implementation:
# name, module, function taking argv, help
DELEGATED: list[tuple[str, str, str, str]] = [
    ("eval", "msewatch.evaluate", "main_eval", "score the engine against labelled pcaps (precision, recall, FP rate)"),
    ("annotate", "msewatch.sinks.eve_annotate", "main_annotate", "add msewatch verdicts to Suricata EVE JSON"),
    ("rules", "msewatch.suricata.rules", "main_rules", "build, check or release the Suricata rule pack"),
    ("report", "msewatch.report", "main_report", "write a self-contained HTML report of the verdicts"),
]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    delegated = {name: (module, func) for name, module, func, _ in DELEGATED}
    try:
        if argv and argv[0] in delegated:
            import importlib

            module, func = delegated[argv[0]]
            return getattr(importlib.import_module(module), func)(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
