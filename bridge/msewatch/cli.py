"""`msewatch` command line: analyze, evidence, run, check-config, default-config, zeek-path,
and the entry points of EVE annotation (annotate), the rule pack (rules), eval and report."""

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

DESCRIPTION = ("Detect encrypted BitTorrent (MSE/PE) and related P2P traffic: offline from\n"
               "pcaps, live from Zeek (run), and joined onto Suricata EVE JSON (annotate).")

EXIT_CODES = """\
exit codes:
  0    success
  1    configuration error, or the command could not start or finish its work
       (config invalid, metrics port in use, a configured output not writable, rule pack invalid)
  2    a file named on the command line cannot be used (missing, unreadable, not writable,
       a folder where a file is expected, not a capture or corrupt), or a bad command line;
       every verdict decided before the error is written
  3    `msewatch eval --check-bars`: an accuracy bar failed
  130  interrupted (Ctrl-C)
Errors are one line on stderr: "msewatch[ SUBCOMMAND]: error: WHAT"."""


def _die(msg: str, code: int = EXIT_ERROR) -> int:
    print(f"msewatch: error: {msg}", file=sys.stderr)
    return code


def _bad_input(paths: Sequence[str]) -> str | None:
    """Why one of `paths` cannot be read as an input file, or None when all can."""
    for p in paths:
        if not os.path.exists(p):
            return f"{p}: no such file"
        if os.path.isdir(p):
            return f"{p}: is a directory, expected a file"
        if not os.access(p, os.R_OK):
            return f"{p}: permission denied"
    return None


def _open_out(path: str | None) -> IO[bytes]:
    if path in (None, "-"):
        return sys.stdout.buffer
    try:
        return open(path, "wb")
    except OSError as e:
        raise OutputError(f"{path}: cannot write: {e.strerror}") from None


class OutputError(Exception):
    """An output file named on the command line cannot be written (exit 2)."""


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


class Summary:
    """What the summary table needs, gathered while verdicts stream out; bounded in memory.

    Flow labels and (label, protocol) pairs are counters. Hosts: the engine reports a host
    when its label changes and once at the end, and the table shows each host's *last*
    verdict, so only the hosts whose last verdict is flagged (not normal_host) are kept, with
    their order of first appearance for ties. Both tables are capped at `max_hosts` (the
    engine's own host.max_hosts): distinct hosts past the cap are counted by a HyperLogLog
    sketch (the count is then printed as approximate), and past the cap the flagged table
    keeps the highest scores (exact while at most max_hosts hosts are flagged at once).
    """

    def __init__(self, max_hosts: int) -> None:
        self.max_hosts = max(max_hosts, 16)
        self.flows = 0
        self.labels: Counter = Counter()
        self.protos: Counter = Counter()
        self.host_order: dict[str, int] = {}  # first-appearance order, up to max_hosts hosts
        self.hosts_sketch = None  # a datasketches HLL once host_order is full
        self.flagged: dict[str, tuple] = {}  # host -> (score, order, label, probability, reasons)
        self._next_order = 0

    def add(self, v: dict) -> None:
        if v["type"] == "flow":
            self.flows += 1
            lab = v["label"]
            self.labels[lab] += 1
            if lab != "normal_likely":
                pr = v["protocol"]  # "unknown" (null before the contract) names no protocol
                self.protos[(lab, pr if pr not in (None, "", "unknown") else "-")] += 1
            return
        host = v["host"]
        order = self.host_order.get(host)
        if order is None:
            prev = self.flagged.get(host)
            if prev is not None:  # seen after the cap, still flagged: keep its place
                order = prev[1]
            else:
                order = self._next_order
                self._next_order += 1
                if len(self.host_order) < self.max_hosts:
                    self.host_order[host] = order
                else:
                    self._sketch_add(host)
        if v["label"] == "normal_host":
            self.flagged.pop(host, None)
            return
        self.flagged[host] = (v["score"], order, v["label"], v["probability"], tuple(v["reasons"]))
        if len(self.flagged) > 2 * self.max_hosts:  # amortised: trim to the max_hosts best
            best = sorted(self.flagged.items(), key=lambda kv: (-kv[1][0], kv[1][1]))[: self.max_hosts]
            self.flagged = dict(best)

    def _sketch_add(self, host: str) -> None:
        if self.hosts_sketch is None:
            from datasketches import hll_sketch, tgt_hll_type

            self.hosts_sketch = hll_sketch(14, tgt_hll_type.HLL_8)  # ~0.8 % standard error
            for h in self.host_order:
                self.hosts_sketch.update(h)
        self.hosts_sketch.update(host)

    def hosts_text(self) -> str:
        if self.hosts_sketch is None:
            return str(len(self.host_order))
        return f"about {round(self.hosts_sketch.get_estimate())}"

    def write(self, out: IO[str], top: int = 10) -> None:
        w = out.write
        w(f"\nmsewatch summary: {self.flows} flows, {self.hosts_text()} hosts\n")
        w(f"{'flow label':<16}{'count':>8}\n")
        for lab in ("p2p_likely", "unknown", "normal_likely"):
            w(f"{lab:<16}{self.labels.get(lab, 0):>8}\n")
        if self.protos:
            w(f"\n{'label':<16}{'protocol':<12}{'count':>8}\n")
            for (lab, pr), n in sorted(self.protos.items(), key=lambda x: (-x[1], x[0])):
                w(f"{lab:<16}{pr:<12}{n:>8}\n")
        flagged = sorted(self.flagged.items(), key=lambda kv: (-kv[1][0], kv[1][1]))[:top]
        if flagged:
            w(f"\n{'host':<40}{'label':<13}{'P':>6}  reasons\n")
            for host, (_score, _order, label, prob, reasons) in flagged:
                why = " ".join(r for r in reasons if not r.endswith("=0") and not r.endswith("=0.0"))
                w(f"{host:<40}{label:<13}{prob:>6.2f}  {why}\n")
        w("\n")


def _summary(verdicts, out: IO[str], top: int = 10, max_hosts: int = 100_000) -> None:
    """The summary table of an iterable of verdict dicts (see Summary)."""
    s = Summary(max_hosts)
    for v in verdicts:
        s.add(v)
    s.write(out, top)


def cmd_analyze(args: argparse.Namespace) -> int:
    """Verdicts stream out as the engine decides them: memory is the engine's (bounded by
    flow_table.max_flows and host.max_hosts) plus the bounded Summary."""
    from .engine import Engine, run_pcaps
    from .sources.pcap import PcapError

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        return _die(str(e))
    bad = _bad_input(args.pcap)
    if bad:
        return _die(bad, EXIT_INPUT)
    sharded = None
    if args.jobs != 1:  # deciding split over N processes by local host (msewatch/jobs.py)
        from .jobs import ShardedRun, effective_jobs

        jobs, why = effective_jobs(args.jobs)
        if why:
            print(f"msewatch: {why}", file=sys.stderr)
        if jobs > 1:
            sharded = ShardedRun(cfg, jobs, args.pcap)
    engine = sharded or Engine(cfg)  # both have flush() for the verdicts after an error
    fmt = _formatter(args.format)
    out = _open_out(args.output)
    progress, close_bar = _progress_factory(args.pcap, not args.no_progress and sys.stderr.isatty())
    summary = None if args.quiet else Summary(cfg.host.max_hosts)
    read_stats: list = []
    rc = EXIT_OK
    dumps, write_out = orjson.dumps, out.write

    def write(v) -> None:
        d = v.to_dict()
        if summary is not None:
            summary.add(d)
        write_out(dumps(fmt(d)) + b"\n")

    try:
        try:
            if sharded:
                verdicts = sharded.run(progress, read_stats)
            else:
                verdicts = run_pcaps(args.pcap, engine, progress, read_stats)
            for v in verdicts:
                write(v)
        except PcapError as e:
            # keep what was decided; decide the open flows on the evidence they have
            for v in engine.flush():
                write(v)
            close_bar()
            rc = _die(str(e), EXIT_INPUT)
        out.flush()
        if out is not sys.stdout.buffer:
            out.close()
    except BrokenPipeError:
        raise
    except OSError as e:  # the output cannot take the verdicts (disk full, ...)
        close_bar()
        name = "stdout" if out is sys.stdout.buffer else args.output
        return _die(f"{name}: cannot write the verdicts: {e.strerror or e}")
    finally:
        close_bar()
    if summary is not None:
        summary.write(sys.stderr)
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
    bad = _bad_input(args.pcap)
    if bad:
        return _die(bad, EXIT_INPUT)
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
        load_config(args.config, check_files=True)
    except ConfigError as e:
        return _die(str(e))
    print(f"{args.config}: ok")
    return EXIT_OK


def normalize_shard(text: str) -> str | None:
    """ "i/N", or "iofN" as in a systemd instance name (msewatch@0of4), as "i/N"; "all" (and
    the one shard of one, "0/1") as None: all evidence, on Zeek's unsharded topic."""
    i, sep, n = text.partition("of")
    if sep and i.isdigit() and n.isdigit():
        text = f"{i}/{n}"
    if text in ("all", "0/1"):
        return None
    return text


def cmd_run(args: argparse.Namespace) -> int:
    """The live bridge: evidence from Zeek in, verdicts to Zeek (and outputs) out."""
    from .bridge import RunError, main_run

    try:
        cfg = load_config(args.config, check_files=True)
        if args.shard is not None:
            from .config import parse_config

            data = cfg.model_dump()
            data["zeek"]["shard"] = normalize_shard(args.shard)
            cfg = parse_config(data, "--shard", check_files=True)
    except ConfigError as e:
        return _die(str(e))
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        return _die(f"--metrics-port {args.metrics_port}: must be 0-65535", EXIT_INPUT)
    try:
        return main_run(cfg, metrics_port=args.metrics_port, verdict_format=args.format)
    except RunError as e:
        return _die(str(e))


def cmd_zeek_path(args: argparse.Namespace) -> int:
    """Where the installed Zeek scripts are: `@load <path>`, or put the parent on ZEEKPATH."""
    from .assets import AssetError, zeek_scripts_dir

    try:
        path = zeek_scripts_dir()
    except AssetError as e:
        return _die(str(e))
    print(path.parent if args.zeekpath else path)
    return EXIT_OK


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


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number of processes >= 0, got {text!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="msewatch", description=DESCRIPTION,
                                epilog=EXIT_CODES + "\n\n`msewatch COMMAND -h` describes each command.",
                                formatter_class=fmt)
    p.add_argument("--version", action="version", version=f"msewatch {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def cmd(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        import textwrap

        return sub.add_parser(name, help=help, description=textwrap.fill(description or help, 88),
                              epilog=EXIT_CODES, formatter_class=fmt)

    a = cmd("analyze", "run the engine on pcap/pcapng files; JSON lines out, summary on stderr",
            "Score every flow and host of the captures: one JSON verdict per line (docs/evidence.md), "
            "and a summary table on stderr.")
    a.add_argument("pcap", nargs="+", help="pcap or pcapng files, read in order as one capture")
    a.add_argument("-o", "--output", metavar="FILE", help="write JSON lines here instead of stdout ('-' = stdout)")
    a.add_argument("-c", "--config", metavar="FILE", help="YAML config (default: the bundled one, `msewatch default-config`)")
    a.add_argument("-q", "--quiet", action="store_true", help="no summary table on stderr")
    a.add_argument("--no-progress", action="store_true", help="never show a progress bar (shown on a terminal after 2 s)")
    _format_option(a, "JSON lines written")
    a.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                   help="decide flows in N processes, split by local host (0: one per CPU; default 1)")
    a.set_defaults(func=cmd_analyze)

    e = cmd("evidence", "print the per-flow evidence (docs/evidence.md) extracted from pcaps",
            "Print the evidence the engine extracts per flow, one JSON object per line: the contract "
            "the Zeek scripts deliver too (docs/evidence.md).")
    e.add_argument("pcap", nargs="+", help="pcap or pcapng files")
    e.add_argument("-o", "--output", metavar="FILE", help="write JSON lines here instead of stdout ('-' = stdout)")
    e.add_argument("-c", "--config", metavar="FILE", help="YAML config: its budget: section sets N, K, H (default: bundled)")
    e.set_defaults(func=cmd_evidence)

    c = cmd("check-config", "validate a YAML config and exit",
            "Validate a YAML config; every problem is named by file and key. Prints 'FILE: ok'.")
    c.add_argument("config", metavar="FILE", help="the YAML config to check")
    c.set_defaults(func=cmd_check_config)

    r = cmd("run", "the live bridge: score evidence from Zeek and send verdicts back",
            "Connect to Zeek's WebSocket API (zeek.endpoints), score MSEWatch::flow_evidence and publish "
            "the verdicts back; also to outputs.verdicts_jsonl and a Suricata dataset if configured. "
            "Retries while Zeek is away; SIGTERM flushes and exits, SIGHUP reopens the output and log "
            "files (logrotate). Metrics: http://127.0.0.1:9877/metrics (docs/deployment.md).")
    r.add_argument("-c", "--config", metavar="FILE", help="YAML config: zeek:, metrics:, log:, outputs: sections (default: bundled)")
    r.add_argument("--shard", metavar="i/N",
                   help='take only shard i of N of the evidence ("0/4", or "0of4" as in msewatch@0of4; "all" = '
                        'every flow); overrides zeek.shard')
    r.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve metrics on this port (0 = any free port); default metrics.port + the shard index")
    _format_option(r, "lines of outputs.verdicts_jsonl")
    r.set_defaults(func=cmd_run)

    z = cmd("zeek-path", "print where the installed Zeek scripts are (for @load)",
            "Print the folder of the msewatch Zeek scripts installed with this package: `@load` it in "
            "local.zeek, or put its parent on ZEEKPATH and `@load msewatch`.")
    z.add_argument("--zeekpath", action="store_true",
                   help="print their parent folder instead: add it to ZEEKPATH and `@load msewatch`")
    z.set_defaults(func=cmd_zeek_path)

    d = cmd("default-config", "print the bundled default config, documented line by line")
    d.set_defaults(func=cmd_default_config)

    for name, _module, _func, helptext in DELEGATED:
        sub.add_parser(name, help=helptext + f" (see `msewatch {name} -h`)", add_help=False)  # run by main()
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
    prog = f"msewatch {argv[0]}" if argv and argv[0] in delegated else "msewatch"
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
    except OutputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as e:
        # a file the subcommand was given cannot be read or written: one line, not a traceback
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"{prog}: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as e:
        from .sources.pcap import PcapError

        if isinstance(e, PcapError):  # unreadable or corrupt capture: the message names file and offset
            print(f"{prog}: error: {e}", file=sys.stderr)
            return EXIT_INPUT
        raise


if __name__ == "__main__":
    sys.exit(main())
