"""Annotate Suricata EVE events with msewatch verdicts, byte-preserving.

Every input line comes out exactly once, in input order. A JSON object line whose flow has a
verdict gets one key added at its end::

    ...original bytes up to the final '}'...,"msewatch":{"label":..,"protocol":..,
    "probability":..,"reasons":[..],"host_score":..}}

The original bytes are never re-serialised: the raw line is cut before its closing brace and
the pre-serialised verdict object is appended. Lines that are not JSON objects pass through
untouched and are counted. A field of the wrong type (a list ``community_id``, a dict
``src_ip``, a list ``proto``, ...) never stops a line: the join uses the fields that have the
right type, or none, and the line is counted in ``join_skipped``. The same holds for the
verdicts: one whose ``ts`` is no number, or that has no usable join key, is skipped and
counted in ``verdicts_skipped``.

Join: on ``community_id`` (Suricata eve-log ``community-id: true``, seed 0 like the engine),
falling back to the 5-tuple in either orientation, choosing the verdict whose flow started
last before the event (within ``window`` seconds).

Waiting: live, a verdict can arrive after the event. A line then waits up to ``max_wait``
seconds, and at most ``max_pending`` lines wait; beyond either bound the oldest goes out
without a verdict. Order is kept (a line never overtakes an earlier one).
"""
from __future__ import annotations

import argparse
import bisect
import ipaddress
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import orjson

from msewatch.sources.eve import OutputError

log = logging.getLogger("msewatch.annotate")

ANNOTATION_KEY = b'"msewatch"'
_NEEDLE = b'"msewatch":'
_FLOW_PROTOS = {"TCP": "tcp", "UDP": "udp", "tcp": "tcp", "udp": "udp"}


@dataclass
class AnnotateStats:
    lines_in: int = 0
    lines_out: int = 0
    annotated: int = 0
    not_json: int = 0  # not JSON at all: passed through untouched
    not_object: int = 0  # JSON but not an object (or no closing brace): passed through
    already_annotated: int = 0  # carried a "msewatch" key already: passed through
    waited: int = 0  # had to wait for a verdict (then got one or timed out)
    timed_out: int = 0  # waited max_wait (or max_pending forced it out) without a verdict
    max_pending_seen: int = 0
    join_skipped: int = 0  # a join field had the wrong type: joined on the others (or not at all)
    verdicts_skipped: int = 0  # verdicts that could not be used (no JSON object, bad ts, no key)
    follow: dict | None = None  # --follow: rotations, truncations, restarts (FollowStats)

    def as_dict(self) -> dict:
        return asdict(self)


def _norm_ip(a: str) -> str:
    if ":" in a:
        try:
            return ipaddress.ip_address(a).compressed
        except ValueError:
            return a
    return a


def parse_eve_time(ts: str) -> float | None:
    """EVE timestamps look like 2026-11-22T02:44:00.123456+0000."""
    try:
        return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except (TypeError, ValueError):
        try:
            return datetime.fromisoformat(ts).timestamp()
        except (TypeError, ValueError, OverflowError, OSError):  # naive year 1 -> mktime fails
            return None


def annotation_bytes(v: dict) -> bytes:
    """The object added to events: the verdict's uid, label, protocol (never null), probability,
    when it was decided, its own and context families, reasons and host score."""
    from msewatch import verdict_fields as vf

    own, ctx = vf.families(v)
    reasons = v.get("reasons")
    return orjson.dumps({
        "uid": v.get("uid"),
        "label": v.get("label"),
        "protocol": vf.protocol(v),
        "probability": v.get("probability"),
        "decided_at": v.get("decided_at"),
        "families_own": own,
        "families_context": ctx,
        "reasons": list(reasons) if isinstance(reasons, (list, tuple)) else [],
        "host_score": v.get("host_score"),
    })


def join_fields(ev: dict) -> dict:
    """The join fields of an event that have a usable type (the slow path, for events
    whose fields made the fast lookup fail): strings, integer or string ports, flow.start."""
    out: dict = {}
    for k in ("community_id", "proto", "src_ip", "dest_ip", "timestamp"):
        x = ev.get(k)
        if isinstance(x, str):
            out[k] = x
    for k in ("src_port", "dest_port"):
        x = ev.get(k)
        if (isinstance(x, int) and not isinstance(x, bool)) or isinstance(x, str):
            out[k] = x
    flow = ev.get("flow")
    if isinstance(flow, dict) and isinstance(flow.get("start"), str):
        out["flow"] = {"start": flow["start"]}
    return out


def _verdict_ts(x) -> float | None:
    """A verdict's flow start: a finite number (or a numeric string); missing means 0."""
    if x is None:
        return 0.0
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        return None
    try:
        ts = float(x)
    except (ValueError, OverflowError):
        return None
    return ts if math.isfinite(ts) else None


def _verdict_tuple(v: dict) -> tuple | None:
    """(proto, orig_h, orig_p, resp_h, resp_p) of a verdict, None when a field is unusable."""
    proto, a, b = v.get("proto", ""), v.get("orig_h"), v.get("resp_h")
    if not (isinstance(proto, str) and isinstance(a, str) and isinstance(b, str)):
        return None
    ports = []
    for x in (v.get("orig_p"), v.get("resp_p")):
        if isinstance(x, bool) or not isinstance(x, (int, str)):
            return None
        try:
            ports.append(int(x))
        except ValueError:
            return None
    return _FLOW_PROTOS.get(proto, proto.lower()), _norm_ip(a), ports[0], _norm_ip(b), ports[1]


class VerdictLookup:
    """Flow verdicts indexed by community_id and by 5-tuple (both orientations)."""

    def __init__(self, verdicts: Iterable[dict] = (), *, window: float = 3600.0, slack: float = 5.0,
                 payload: Callable[[dict], object] = annotation_bytes) -> None:
        self.window = window
        self.payload = payload  # verdict dict -> what the Annotator's render gets (ECS: a dict)
        self.slack = slack
        self._by_cid: dict[str, list[tuple[float, bytes]]] = {}
        self._by_tuple: dict[tuple, list[tuple[float, bytes]]] = {}
        self.version = 0  # moves whenever a verdict is added
        self._count = 0
        self.skipped = 0  # verdicts that could not be used (counted, never fatal)
        for v in verdicts:
            self.add(v)

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def _insert(index: dict, key, ts: float, payload: bytes) -> None:
        lst = index.setdefault(key, [])
        item = (ts, payload)
        if not lst or lst[-1][0] <= ts:
            lst.append(item)
        else:
            bisect.insort(lst, item, key=lambda x: x[0])
        # a later verdict for the same flow start replaces the earlier one
        i = bisect.bisect_left(lst, ts, key=lambda x: x[0])
        while i < len(lst) - 1 and lst[i][0] == ts and lst[i] is not item:
            del lst[i]

    def add(self, v) -> bool:
        """Index one verdict. A verdict that cannot be used (not an object, ts no number, no
        usable community_id or 5-tuple) is skipped and counted, never fatal."""
        if not isinstance(v, dict):
            self.skipped += 1
            return False
        if v.get("type", "flow") != "flow":
            return False  # host verdicts do not annotate flows
        ts = _verdict_ts(v.get("ts"))
        cid = v.get("community_id")
        cid = cid if isinstance(cid, str) and cid else None
        key = _verdict_tuple(v)
        if ts is None or (cid is None and key is None):
            self.skipped += 1
            return False
        try:
            payload = self.payload(v)
        except (TypeError, ValueError, AttributeError, OverflowError):  # odd field types, unencodable
            self.skipped += 1
            return False
        self._count += 1
        if cid is not None:
            self._insert(self._by_cid, cid, ts, payload)
        if key is not None:
            proto, a, ap, b, bp = key
            self._insert(self._by_tuple, (proto, a, ap, b, bp, True), ts, payload)
            self._insert(self._by_tuple, (proto, b, bp, a, ap, False), ts, payload)
        self.version += 1
        return True

    def add_line(self, line: bytes) -> bool:
        """Index the verdict on one JSON line (blank lines are ignored, bad ones counted)."""
        if not line.strip():
            return False
        try:
            v = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.skipped += 1
            return False
        return self.add(v)

    def _pick(self, lst: list[tuple[float, bytes]], ev: dict) -> bytes | None:
        if len(lst) == 1 and lst[0][0] == 0.0:
            return lst[0][1]
        ets = None
        flow = ev.get("flow")
        if isinstance(flow, dict) and isinstance(flow.get("start"), str):
            ets = parse_eve_time(flow["start"])
        if ets is None:
            ets = parse_eve_time(ev.get("timestamp"))
        if ets is None:
            return lst[-1][1]
        i = bisect.bisect_right(lst, ets + self.slack, key=lambda x: x[0])
        if i == 0:
            return None
        ts, payload = lst[i - 1]
        if ets - ts > self.window:
            return None
        return payload

    def lookup(self, ev: dict) -> bytes | None:
        cid = ev.get("community_id")
        if cid:
            lst = self._by_cid.get(cid)
            if lst:
                return self._pick(lst, ev)
        if not self._by_tuple:
            return None
        proto = _FLOW_PROTOS.get(ev.get("proto"))
        if proto is None:
            return None
        try:
            key = (proto, _norm_ip(ev["src_ip"]), int(ev["src_port"]), _norm_ip(ev["dest_ip"]), int(ev["dest_port"]))
        except (KeyError, TypeError, ValueError):
            return None
        lst = self._by_tuple.get(key + (True,)) or self._by_tuple.get(key + (False,))
        return self._pick(lst, ev) if lst else None

    def could_match(self, ev: dict) -> bool:
        """Whether a verdict could still come for this event (it belongs to a TCP/UDP flow)."""
        proto = ev.get("proto")
        return isinstance(proto, str) and proto in _FLOW_PROTOS and isinstance(ev.get("src_ip"), str)


def annotate_line(raw: bytes, payload: bytes) -> bytes:
    """raw with ,"msewatch":payload inserted before its final '}' (trailing whitespace kept)."""
    end = len(raw)
    while end and raw[end - 1] in b" \t\r\n":
        end -= 1
    body = raw[:end - 1]
    sep = b"" if body.rstrip().endswith(b"{") else b","
    return body + sep + _NEEDLE + payload + b"}" + raw[end:]


class Annotator:
    """Streaming core: feed lines, get them out in order, annotated when a verdict is known."""

    def __init__(self, lookup: VerdictLookup, out, stats: AnnotateStats | None = None, *,
                 max_wait: float = 0.0, max_pending: int = 10_000,
                 clock: Callable[[], float] = time.monotonic,
                 on_emit: Callable[[int], None] | None = None,
                 render: Callable[[bytes, object], bytes] | None = None) -> None:
        self.lookup = lookup
        self.render = render  # (raw line, payload or None) -> output bytes; None: EVE as is
        self.out = out
        self.stats = stats if stats is not None else AnnotateStats()
        self.max_wait = max_wait
        self.max_pending = max_pending
        self.clock = clock
        self.on_emit = on_emit
        # entries: [raw, event-or-None, arrival time, lookup version tried]
        self._pending: deque[list] = deque()

    def _classify(self, raw: bytes):
        """Parse; return (event dict or None, payload or None, final?)."""
        try:
            ev = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.stats.not_json += 1
            return None, None, True
        if not isinstance(ev, dict) or not raw.rstrip().endswith(b"}"):
            self.stats.not_object += 1
            return None, None, True
        if "msewatch" in ev:
            self.stats.already_annotated += 1
            return None, None, True
        try:  # the fast path: fields of the expected types (a try costs nothing in 3.11)
            payload = self.lookup.lookup(ev)
        except Exception:
            ev, payload = self._join_slow(ev)
        if payload is not None:
            return ev, payload, True
        return ev, None, not (self.max_wait > 0 and self.lookup.could_match(ev))

    def _join_slow(self, ev: dict) -> tuple[dict, bytes | None]:
        """A join field has the wrong type: join on the fields that are usable. Returns the
        event reduced to those fields (kept if the line waits) and the payload, if any."""
        self.stats.join_skipped += 1
        ev = join_fields(ev)
        try:
            return ev, self.lookup.lookup(ev)
        except Exception:  # not expected with clean fields; the line must pass regardless
            return {}, None

    def _write(self, raw: bytes, payload: bytes | None) -> None:
        if self.render is not None:
            self.out.write(self.render(raw, payload))
            if payload is not None:
                self.stats.annotated += 1
        elif payload is not None:
            self.out.write(annotate_line(raw, payload))
            self.stats.annotated += 1
        else:
            self.out.write(raw)
        self.stats.lines_out += 1

    def feed(self, raw: bytes) -> None:
        self.stats.lines_in += 1
        ev, payload, final = self._classify(raw)
        if not self._pending and final:
            self._write(raw, payload)
            if self.on_emit:
                self.on_emit(1)
            return
        self._pending.append([raw, ev, self.clock(), self.lookup.version, payload, final])
        if not final:
            self.stats.waited += 1
        if len(self._pending) > self.stats.max_pending_seen:
            self.stats.max_pending_seen = len(self._pending)
        self.tick()

    def tick(self, force: bool = False) -> int:
        """Emit every line at the head that is ready; returns how many went out."""
        n = 0
        now = self.clock()
        pend = self._pending
        while pend:
            raw, ev, t_in, ver, payload, final = pend[0]
            if not final and ver != self.lookup.version:
                try:
                    payload = self.lookup.lookup(ev)
                except Exception:
                    ev, payload = self._join_slow(ev)
                    pend[0][1] = ev
                pend[0][3] = self.lookup.version
                if payload is not None:
                    final = True
            if not final:
                if force or now - t_in >= self.max_wait or len(pend) > self.max_pending:
                    self.stats.timed_out += 1
                else:
                    break
            pend.popleft()
            self._write(raw, payload)
            n += 1
        if n and self.on_emit:
            self.on_emit(n)
        return n

    def close(self) -> None:
        self.tick(force=True)
        self.stats.verdicts_skipped = self.lookup.skipped

    @property
    def pending(self) -> int:
        return len(self._pending)


def annotate(in_lines: Iterable[bytes | None], verdict_lookup: VerdictLookup, out,
             stats: AnnotateStats | None = None, *, max_wait: float = 0.0, max_pending: int = 10_000,
             clock: Callable[[], float] = time.monotonic,
             on_emit: Callable[[int], None] | None = None,
             render: Callable[[bytes, object], bytes] | None = None) -> AnnotateStats:
    """Annotate every line of in_lines into out (a binary writer). None items are idle ticks."""
    ann = Annotator(verdict_lookup, out, stats, max_wait=max_wait, max_pending=max_pending,
                    clock=clock, on_emit=on_emit, render=render)
    for raw in in_lines:
        if raw is None:
            ann.tick()
        else:
            ann.feed(raw)
    ann.close()
    return ann.stats


# -- verdict sources --------------------------------------------------------------------------
def verdicts_from_jsonl(path: str | Path) -> Iterator[dict]:
    """The JSON objects of a verdicts file (other lines are dropped; see VerdictLookup.add_line
    for the counted way)."""
    from msewatch.sources.eve import read_lines

    for line in read_lines(path):
        line = line.strip()
        if not line:
            continue
        try:
            v = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(v, dict):
            yield v


def verdicts_from_pcaps(pcaps: list[str], config: str | None = None) -> list[dict]:
    """Run the msewatch engine over the capture Suricata read, for the same flows' verdicts."""
    from msewatch.config import load_config
    from msewatch.engine import analyze_pcaps

    cfg = load_config(config)
    return [v.to_dict() for v in analyze_pcaps(pcaps, cfg)]


# -- follow mode ------------------------------------------------------------------------------
def follow(eve_path: str | Path, out_path: str | Path, lookup: VerdictLookup, *,
           checkpoint: str | Path | None = None, verdicts_path: str | Path | None = None,
           max_wait: float = 2.0, max_pending: int = 10_000, poll_interval: float = 0.2,
           checkpoint_every: int = 1000, stop: Callable[[], bool] | None = None,
           stats: AnnotateStats | None = None,
           render: Callable[[bytes, object], bytes] | None = None) -> AnnotateStats:
    """Follow eve_path (tail -F) and append annotated lines to out_path, exactly once.

    The checkpoint holds the input position after the last emitted line and the output size
    then; a restart truncates out_path back to that size (dropping lines written after the last
    checkpoint) and resumes reading right after that line, so no line is lost or duplicated.
    The checkpoint only moves after the output was flushed and fsynced: when the disk is full
    the write fails (OutputError naming the file), nothing is committed past the last durable
    line, and a restart resumes there. A bad checkpoint raises CheckpointError.
    """
    from msewatch.sources.eve import Checkpoint, Follower, open_output, sync_output

    fol = Follower(eve_path, checkpoint, poll_interval=poll_interval)
    out_path = Path(out_path)
    ck = Checkpoint.load(Path(checkpoint)) if checkpoint else None
    out = open_output(out_path, "ab")
    try:
        if ck is not None and ck.out_size is not None:
            size = out.tell()
            if size > ck.out_size:
                out.truncate(ck.out_size)
                out.seek(ck.out_size)
            elif size < ck.out_size:
                log.warning("%s is %d bytes, shorter than the %d the checkpoint recorded: lines were "
                            "removed from it while annotate was stopped; appending after what is left",
                            out_path, size, ck.out_size)
        elif ck is None and checkpoint:
            out.truncate(0)
    except OSError as e:
        out.close()
        raise OutputError(f"cannot truncate {out_path}: {e.strerror or e}") from None
    vfollower = Follower(verdicts_path, poll_interval=0) if verdicts_path else None
    vit = vfollower.lines() if vfollower else None

    def pull_verdicts() -> None:
        if vit is None:
            return
        for line in vit:
            if line is None:
                return
            lookup.add_line(line)

    uncommitted = 0

    def on_emit(n: int) -> None:
        nonlocal uncommitted
        uncommitted += n
        if uncommitted >= checkpoint_every:
            commit()

    def commit() -> None:
        nonlocal uncommitted
        if uncommitted:
            sync_output(out)
            fol.commit(uncommitted, out.tell())
            uncommitted = 0

    ann = Annotator(lookup, out, stats, max_wait=max_wait, max_pending=max_pending, on_emit=on_emit,
                    render=render)
    try:
        pull_verdicts()
        for raw in fol.lines(stop=lambda: (stop is not None and stop()) and ann.pending == 0):
            if raw is None:
                pull_verdicts()
                ann.tick()
                commit()
                if stop is not None and stop():
                    ann.close()
                    commit()
            else:
                ann.feed(raw)
        ann.close()
        commit()
    finally:
        try:
            out.close()
        except (OSError, OutputError):
            pass  # only lines after the last checkpoint were in the buffer: a restart redoes them
        fol.close()
        if vfollower:
            vfollower.close()
        ann.stats.verdicts_skipped = lookup.skipped
        ann.stats.follow = asdict(fol.stats)
    return ann.stats


# -- command line -----------------------------------------------------------------------------
def main_annotate(argv: list[str] | None = None) -> int:
    """`msewatch annotate [--pcap CAP | --verdicts FILE] EVE [--out FILE] [--follow ...]`."""
    ap = argparse.ArgumentParser(
        prog="msewatch annotate",
        description="Add a \"msewatch\" object to Suricata EVE events of flows msewatch has a verdict for.")
    ap.add_argument("eve", type=Path, help="Suricata eve.json (JSON lines)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pcap", action="append", default=None, metavar="CAPTURE",
                     help="run the msewatch engine over the capture Suricata read (repeatable)")
    src.add_argument("--verdicts", type=Path, help="verdicts JSONL written by the bridge")
    ap.add_argument("--config", default=None, help="msewatch config for --pcap")
    ap.add_argument("--out", "-o", default="-", help="output file (default: stdout)")
    ap.add_argument("--follow", "-F", action="store_true",
                    help="follow EVE like tail -F (rotation-safe); needs --out FILE")
    ap.add_argument("--checkpoint", type=Path, help="checkpoint file for --follow (restart without loss or duplicates)")
    ap.add_argument("--max-wait", type=float, default=None,
                    help="seconds an event may wait for its verdict (default 0 offline, 2 with --follow)")
    ap.add_argument("--max-pending", type=int, default=10_000, help="most lines held waiting for verdicts")
    ap.add_argument("--window", type=float, default=3600.0,
                    help="a 5-tuple match needs the flow to have started at most this many seconds before the event")
    ap.add_argument("--stats", action="store_true", help="print counters to stderr at the end")
    ap.add_argument("--format", choices=("eve", "ecs"), default="eve",
                    help="eve: every line as it came, with a \"msewatch\" object added where a verdict "
                    "matches; ecs: every line as an Elastic Common Schema document (docs/siem.md) "
                    "(default: %(default)s)")
    args = ap.parse_args(argv)
    render = None
    payload = annotation_bytes
    if args.format == "ecs":
        from msewatch.ecs import eve_line, msewatch_flow

        render, payload = eve_line, msewatch_flow

    from msewatch.sources.eve import CheckpointError, InputError

    if not logging.getLogger().handlers:  # warnings (rotation, restarts) as one line each on stderr
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="msewatch annotate: %(message)s")

    def fail(msg: str, code: int) -> int:
        print(f"msewatch annotate: error: {msg}", file=sys.stderr)
        return code

    try:
        stats = _run_annotate(args, render, payload)
    except (CheckpointError, InputError) as e:
        return fail(str(e), 2)
    except OutputError as e:
        return fail(f"{e}; the input is untouched{'; a restart resumes at the last checkpoint' if args.follow else ''}", 1)
    except BrokenPipeError:
        raise
    except OSError as e:  # stdout refuses (disk full behind a redirection, ...)
        return fail(f"cannot write {'stdout' if args.out == '-' else args.out}: {e.strerror or e}", 1)
    if stats is None:
        return 2
    if args.stats:
        print(orjson.dumps(stats.as_dict()).decode(), file=sys.stderr)
    return 0


def _run_annotate(args: argparse.Namespace, render, payload) -> AnnotateStats | None:
    from msewatch.sources.eve import open_output, read_lines

    if args.pcap:
        try:
            verdicts = verdicts_from_pcaps(args.pcap, args.config)
        except ImportError as e:
            print(f"msewatch annotate: error: the engine is not available ({e})", file=sys.stderr)
            return None
        lookup = VerdictLookup(verdicts, window=args.window, payload=payload)
    else:
        lookup = VerdictLookup((), window=args.window, payload=payload)
        if not args.follow:
            for line in read_lines(args.verdicts):
                lookup.add_line(line)
    if args.follow:
        if args.out == "-":
            print("msewatch annotate: error: --follow needs --out FILE (exactly-once output needs a file)", file=sys.stderr)
            return None
        try:
            return follow(args.eve, args.out, lookup, checkpoint=args.checkpoint,
                          verdicts_path=args.verdicts if not args.pcap else None,
                          max_wait=2.0 if args.max_wait is None else args.max_wait,
                          max_pending=args.max_pending, render=render)
        except KeyboardInterrupt:
            return AnnotateStats()
    lines = read_lines(args.eve)
    out = sys.stdout.buffer if args.out == "-" else open_output(args.out, "wb")
    try:
        stats = annotate(lines, lookup, out, max_wait=args.max_wait or 0.0, max_pending=args.max_pending,
                         render=render)
    except BaseException:
        if out is not sys.stdout.buffer:
            try:
                out.close()
            except (OSError, OutputError):
                pass  # the first error is the one to report
        raise
    if out is sys.stdout.buffer:
        out.flush()
    else:
        out.close()
    return stats


if __name__ == "__main__":
    raise SystemExit(main_annotate())
