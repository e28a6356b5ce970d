#!/usr/bin/env python3
"""The floor of Zeek's WebSocket v1 JSON API: the fewest instructions Zeek 8.0.10 can spend to
get N flows' worth of evidence out to a WebSocket client and the answers back, however well
the data is packed (issue 9: is <= 1.10x plain `zeek -r` reachable with a bridge answering?).

    .venv/bin/python benchmarks/zeek_ws_floor.py [--flows 7170] [--size 2054] [--shapes ...]
    .venv/bin/python benchmarks/zeek_ws_floor.py --list          # the shapes

Each shape is one run of a small Zeek script (written to a temp dir) under
`valgrind --tool=callgrind` (instructions of all threads; they do not depend on the machine's
load; the same run gives the same count to about 0.1 %). Zeek listens with Cluster::listen_websocket on a free 127.0.0.1 port, waits for the
client (websockets, this process) to subscribe, publishes the shape's events on the topic
the client subscribed to, and terminates when the client, after it received every event and
sent its answers, publishes `Floor::done`. The baseline run does the same with nothing
published and nothing answered, so each shape's instructions over the baseline are what its
publishing/answering costs Zeek. The table gives that per flow and as a share of 1.1 M
instructions, plain Zeek's cost per connection on the benchmark capture (7.97 G / 7,170
connections, docs/zeek.md "Overhead"): the ratio this shape alone adds to plain `zeek -r`.
A last line composes the floor of the bridge round trip from the cheapest shapes (evidence
out, labels, --full-verdicts msewatch.log lines) and adds the package's cost without a bridge
(--package-cost) to give the least ratio a bridge answering can reach. Waiting idle costs
Zeek nothing measurable (--idle 15 on the baseline: +2 M instructions), so the runs' different
lengths do not matter.

Shapes (S = --size bytes of hex digits, the evidence's JSON size per flow):
  baseline       nothing published, nothing answered (client connects, subscribes, done)
  ev1            one event per flow, one string of S bytes
  ev10 / ev100   one event per 10 / 100 flows, one string of B*S bytes
  vec10 / vec100 one event per 10 / 100 flows, a vector of B strings of S bytes
  ev1-s16, ev100-s16, ev100-s256
                 ev1 / ev100 with 16 or 256 bytes per flow: the cost per message and the
                 cost per byte, apart
  labels         answers only: one event per 1,000 flows with two strings (uids, labels),
                 like MSEWatch::flow_labels; empty handler
  verdicts       answers only: one event per flow (uid, label, protocol, probability),
                 whose handler writes one 10-field log line (Log::write)
  verdicts-nolog the same events, empty handler (the wire part of `verdicts`)
  verdicts-packed answers only: one event per 1,000 flows with four packed strings (uids,
                 labels, protocols, probabilities), split in the handler, one 10-field log
                 line per flow: the cheapest way to get msewatch.log lines written
  logonly        no WebSocket traffic: Zeek itself writes N 10-field log lines (the
                 Log::write part of `verdicts`)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import websockets
except ImportError:  # pragma: no cover
    sys.exit("zeek_ws_floor: needs the `websockets` package (pip install websockets)")

PLAIN_PER_CONN = 7.97e9 / 7170  # plain `zeek -r` instructions per connection (docs/zeek.md)
OUT_TOPIC = "floor/out"
IN_TOPIC = "floor/in"

# name -> (publish kind, batch, answer kind[, bytes per flow instead of --size])
SHAPES: dict[str, tuple] = {
    "baseline": ("none", 1, "none"),
    "ev1": ("string", 1, "none"),
    "ev10": ("string", 10, "none"),
    "ev100": ("string", 100, "none"),
    "vec10": ("vector", 10, "none"),
    "vec100": ("vector", 100, "none"),
    "ev1-s16": ("string", 1, "none", 16),
    "ev100-s16": ("string", 100, "none", 16),
    "ev100-s256": ("string", 100, "none", 256),
    "labels": ("none", 1, "labels"),
    "verdicts": ("none", 1, "verdicts"),
    "verdicts-nolog": ("none", 1, "verdicts-nolog"),
    "verdicts-packed": ("none", 1, "verdicts-packed"),
    "logonly": ("none", 1, "logonly"),
}
DEFAULT_SHAPES = list(SHAPES)

ZEEK_SCRIPT = r"""
redef exit_only_after_terminate = T;
redef Broker::web_socket_buffer_size = 1000000;

module Floor;

export {
	const publish_kind = "none" &redef;   # none, string, vector
	const answer_kind = "none" &redef;    # none, labels, verdicts, verdicts-nolog, logonly
	const n_flows = 7170 &redef;
	const size = 2054 &redef;
	const batch = 1 &redef;
	const ws_port = 0/tcp &redef;

	redef enum Log::ID += { LOG };
	type Info: record {
		ts: time &log;
		uid: string &log;
		orig_h: addr &log;
		orig_p: port &log;
		resp_h: addr &log;
		resp_p: port &log;
		kind: string &log;
		label: string &log;
		protocol: string &log;
		probability: double &log;
	};

	global one: event(s: string);
	global many: event(v: vector of string);
	global labels: event(uids: string, labels: string);
	global verdict: event(uid: string, label: string, protocol: string, probability: double);
	global verdicts: event(uids: string, labels: string, protocols: string, probabilities: string);
	global done: event();
}

global published = F;

function write_line(uid: string, label: string, protocol: string, probability: double)
	{
	Log::write(LOG, Info($ts=current_time(), $uid=uid, $orig_h=10.0.0.1, $orig_p=51413/tcp,
	                     $resp_h=10.0.0.2, $resp_p=6881/tcp, $kind="flow", $label=label,
	                     $protocol=protocol, $probability=probability));
	}

event zeek_init()
	{
	if ( answer_kind == "verdicts" || answer_kind == "verdicts-packed" || answer_kind == "logonly" )
		Log::create_stream(LOG, [$columns=Info, $path="floor"]);
	Cluster::subscribe("floor/in");
	if ( ! Cluster::listen_websocket(Cluster::WebSocketServerOptions(
	         $listen_addr=127.0.0.1, $listen_port=ws_port)) )
		{
		print "FLOOR-ERROR cannot listen";
		terminate();
		}
	print fmt("FLOOR-LISTENING %s", ws_port);
	}

event Cluster::websocket_client_added(endpoint: Cluster::EndpointInfo, subscriptions: string_vec)
	{
	if ( published )
		return;
	published = T;
	local i = 0;
	if ( publish_kind == "string" )
		{
		local s = sub_bytes(string_fill(size * batch + 1, "0123456789abcdef"), 1, size * batch);  # string_fill ends in a NUL
		while ( i < n_flows )
			{
			Cluster::publish("floor/out", Floor::one, s);
			i += batch;
			}
		}
	else if ( publish_kind == "vector" )
		{
		local one_s = sub_bytes(string_fill(size + 1, "0123456789abcdef"), 1, size);
		local v: vector of string = vector();
		while ( |v| < batch )
			v += one_s;
		while ( i < n_flows )
			{
			Cluster::publish("floor/out", Floor::many, v);
			i += batch;
			}
		}
	if ( answer_kind == "logonly" )
		{
		while ( i < n_flows )
			{
			write_line(fmt("C%017d", i), "p2p_likely", "bt_mse", 0.97);
			++i;
			}
		}
	}

event Floor::labels(uids: string, labels: string)
	{
	}

event Floor::verdict(uid: string, label: string, protocol: string, probability: double)
	{
	if ( answer_kind == "verdicts" )
		write_line(uid, label, protocol, probability);
	}

event Floor::verdicts(uids: string, labels: string, protocols: string, probabilities: string)
	{
	local u = split_string(uids, / /);
	local l = split_string(labels, / /);
	local p = split_string(protocols, / /);
	local q = split_string(probabilities, / /);
	for ( i in u )
		write_line(u[i], l[i], p[i], to_double(q[i]));
	}

event Floor::done()
	{
	terminate();
	}
"""


class FloorError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event_json(name: str, args: list[dict]) -> str:
    """A v1 JSON data-message carrying the Zeek event name(args) on IN_TOPIC."""
    return json.dumps({
        "type": "data-message", "topic": IN_TOPIC, "@data-type": "vector",
        "data": [{"@data-type": "count", "data": 1}, {"@data-type": "count", "data": 1},
                 {"@data-type": "vector", "data": [
                     {"@data-type": "string", "data": name},
                     {"@data-type": "vector", "data": args}]}]},
        separators=(",", ":"))


def s_(text: str) -> dict:
    return {"@data-type": "string", "data": text}


def answers(kind: str, n: int) -> list[str]:
    uid = [f"C{i:017d}" for i in range(n)]
    if kind == "labels":
        out = []
        for lo in range(0, n, 1000):
            hi = min(n, lo + 1000)
            out.append(event_json("Floor::labels", [
                s_(" ".join(uid[lo:hi])),
                s_(" ".join("normal_likely" if i % 2 else "unknown" for i in range(lo, hi)))]))
        return out
    if kind == "verdicts-packed":
        out = []
        for lo in range(0, n, 1000):
            hi = min(n, lo + 1000)
            out.append(event_json("Floor::verdicts", [
                s_(" ".join(uid[lo:hi])), s_(" ".join(["p2p_likely"] * (hi - lo))),
                s_(" ".join(["bt_mse"] * (hi - lo))), s_(" ".join(["0.97"] * (hi - lo)))]))
        return out
    if kind in ("verdicts", "verdicts-nolog"):
        return [event_json("Floor::verdict", [s_(u), s_("p2p_likely"), s_("bt_mse"),
                                              {"@data-type": "real", "data": 0.97}]) for u in uid]
    return []


def string_bytes(value) -> int:
    """Total length of the strings in a decoded v1 value (the payload that arrived)."""
    if isinstance(value, dict):
        if value.get("@data-type") == "string":
            return len(value["data"])
        return string_bytes(value.get("data"))
    if isinstance(value, list):
        return sum(string_bytes(v) for v in value)
    return 0


async def client(port: int, expect_events: int, answer_msgs: list[str], deadline: float,
                 idle: float = 0.0) -> dict:
    url = f"ws://127.0.0.1:{port}/v1/messages/json"
    while True:  # Zeek under valgrind takes a while to listen
        try:
            ws = await websockets.connect(url, max_size=None, ping_interval=None,
                                          open_timeout=10)
            break
        except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake):
            if time.monotonic() > deadline:
                raise FloorError(f"could not connect to {url} before the time-out")
            await asyncio.sleep(0.5)
    async with ws:
        await ws.send(json.dumps([OUT_TOPIC]))
        ack = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if ack.get("type") != "ack":
            raise FloorError(f"expected an ack, got {str(ack)[:200]}")
        got = wire_bytes = payload = 0
        while got < expect_events:
            msg = await asyncio.wait_for(ws.recv(), max(1.0, deadline - time.monotonic()))
            d = json.loads(msg)
            if d.get("type") != "data-message":
                raise FloorError(f"unexpected message: {msg[:200]}")
            got += 1
            wire_bytes += len(msg)
            payload += string_bytes(d["data"][2]["data"][1])
        for m in answer_msgs:
            await ws.send(m)
        if idle:
            await asyncio.sleep(idle)
        await ws.send(event_json("Floor::done", []))
        try:
            await asyncio.wait_for(ws.wait_closed(), max(1.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass
    return {"events": got, "wire_bytes": wire_bytes, "payload": payload}


def callgrind_total(path: Path) -> int:
    text = path.read_text(errors="replace")
    m = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(r"^summary:\s+(\d+)", text, re.M)
    if not m:
        raise FloorError(f"no totals/summary line in {path}")
    return int(m.group(1))


async def run_shape(name: str, args, tmp: Path) -> dict:
    publish_kind, batch, answer_kind = SHAPES[name][:3]
    size = SHAPES[name][3] if len(SHAPES[name]) > 3 else args.size
    if publish_kind == "none":
        batch = 1
    n = args.flows
    port = free_port()
    work = tmp / name
    work.mkdir()
    script = tmp / "floor.zeek"
    out = work / "callgrind.out"
    cmd = []
    if not args.no_valgrind:
        cmd += ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    cmd += [args.zeek]
    if args.bare:
        cmd += ["-b", "base/frameworks/cluster", "base/frameworks/logging"]
    cmd += [str(script),
            f"Floor::publish_kind={publish_kind}", f"Floor::answer_kind={answer_kind}",
            f"Floor::n_flows={n}", f"Floor::size={size}", f"Floor::batch={batch}",
            f"Floor::ws_port={port}/tcp"]
    expect = 0 if publish_kind == "none" else -(-n // batch)
    msgs = answers(answer_kind, n)
    deadline = time.monotonic() + args.timeout
    log = open(work / "zeek.stdout", "wb")
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=work, stdout=log,
                                                stderr=subprocess.STDOUT)
    try:
        ctask = asyncio.create_task(client(port, expect, msgs, deadline, args.idle))
        ptask = asyncio.create_task(proc.wait())
        await asyncio.wait({ctask, ptask}, timeout=max(1.0, deadline - time.monotonic()),
                           return_when=asyncio.FIRST_COMPLETED)
        if not ctask.done():
            ctask.cancel()
            if ptask.done():
                raise FloorError(f"zeek exited {proc.returncode} before the client was done")
            raise asyncio.TimeoutError()
        info = ctask.result()
        rc = await asyncio.wait_for(proc.wait(), max(1.0, deadline - time.monotonic()))
    except (asyncio.TimeoutError, FloorError, OSError, websockets.exceptions.WebSocketException) as e:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        tail = (work / "zeek.stdout").read_text(errors="replace")[-600:].strip().replace("\n", " | ")
        raise FloorError(f"{name}: {type(e).__name__}: {e or 'time-out'} (zeek: {tail})") from None
    finally:
        log.close()
    if rc != 0:
        tail = (work / "zeek.stdout").read_text(errors="replace")[-600:].strip().replace("\n", " | ")
        raise FloorError(f"{name}: zeek exited {rc} ({tail})")
    if publish_kind != "none" and info["payload"] != expect * batch * size:
        raise FloorError(f"{name}: received {info['payload']} payload bytes, "
                         f"expected {expect * batch * size}")
    lines = None
    if answer_kind in ("verdicts", "verdicts-packed", "logonly"):
        log_path = work / "floor.log"
        lines = sum(1 for ln in log_path.read_text().splitlines() if not ln.startswith("#")) \
            if log_path.exists() else 0
        if lines != n:
            raise FloorError(f"{name}: floor.log has {lines} lines, expected {n}")
    info.update(name=name, answers=len(msgs), flows=expect * batch if expect else n,
                size=size if publish_kind != "none" else "-", log_lines=lines,
                instructions=None if args.no_valgrind else callgrind_total(out))
    return info


async def main_async(args) -> int:
    shapes = args.shapes
    if "baseline" not in shapes:
        shapes = ["baseline"] + shapes
    tmp = Path(tempfile.mkdtemp(prefix="zeek_ws_floor."))
    (tmp / "floor.zeek").write_text(ZEEK_SCRIPT)
    results: dict[str, dict] = {}
    try:
        sem = asyncio.Semaphore(args.jobs)

        async def one(name):
            async with sem:
                t0 = time.monotonic()
                r = await run_shape(name, args, tmp)
                r["wall"] = time.monotonic() - t0
                results[name] = r
                print(f"  {name}: done in {r['wall']:.0f} s", file=sys.stderr, flush=True)

        tasks = [asyncio.create_task(one(s)) for s in shapes]
        await asyncio.wait(tasks)
        errors = [t.exception() for t in tasks if t.exception()]
        for e in errors:
            print(f"zeek_ws_floor: {e}", file=sys.stderr)
        if "baseline" not in results:
            return 1
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    base = results["baseline"]["instructions"]
    n = args.flows
    print(f"Zeek WebSocket v1 JSON floor: {n} flows, {args.size} bytes per flow; "
          f"instructions (callgrind, all threads); share = per flow / {PLAIN_PER_CONN / 1e3:.0f} k "
          f"(plain zeek -r per connection)")
    hdr = f"{'shape':<15} {'B/flow':>6} {'events':>7} {'JSON bytes':>11} {'instructions':>14} {'over base':>12} {'per flow':>10} {'share':>7}"
    print(hdr)
    print("-" * len(hdr))
    for name in shapes:
        r = results.get(name)
        if r is None:
            print(f"{name:<15} failed")
            continue
        ins = r["instructions"]
        if ins is None:
            print(f"{name:<15} {r['size']:>6} {r['events'] or r['answers']:>7} (no valgrind)")
            continue
        over = ins - base
        per = over / (r["flows"] or n)
        ev = r["events"] or r["answers"] or (r["log_lines"] or 0)
        print(f"{name:<15} {r['size']:>6} {ev:>7} {r['wire_bytes']:>11} {ins / 1e9:>13.3f}G "
              f"{over / 1e6:>11.1f}M {per / 1e3:>9.1f}k {per / PLAIN_PER_CONN:>7.1%}")
    # The floor of the bridge round trip, composed from the cheapest shapes measured.
    def per(name):
        r = results.get(name)
        return None if r is None or r["instructions"] is None else (r["instructions"] - base) / (r["flows"] or n)
    ev = {s: per(s) for s in shapes if SHAPES[s][0] != "none" and len(SHAPES[s]) == 3 and per(s) is not None}
    lab, logs = per("labels"), [x for x in (per("verdicts"), per("verdicts-packed")) if x is not None]
    if ev and lab is not None and logs:
        best = min(ev, key=ev.get)
        share = args.full_verdicts / n
        log_name = "verdicts-packed" if per("verdicts-packed") == min(logs) else "verdicts"
        floor = ev[best] + lab + min(logs) * share
        print()
        print(f"floor per connection: evidence out {ev[best] / 1e3:.1f}k ({best}) + labels "
              f"{lab / 1e3:.1f}k + msewatch.log lines {min(logs) / 1e3:.1f}k ({log_name}) x "
              f"{args.full_verdicts}/{n} = {floor / 1e3:.1f}k = {floor / PLAIN_PER_CONN:.1%} of plain")
        total = args.package_cost + floor
        print(f"with the package's no-bridge cost ({args.package_cost / 1e3:.0f}k): {total / 1e3:.1f}k per "
              f"connection -> ratio >= {1 + total / PLAIN_PER_CONN:.3f} (target 1.10: "
              f"{0.10 * PLAIN_PER_CONN / 1e3:.0f}k per connection)")
    return 0 if len(results) == len(shapes) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=7170)
    ap.add_argument("--size", type=int, default=2054, help="evidence bytes per flow")
    ap.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, choices=list(SHAPES))
    ap.add_argument("--full-verdicts", type=int, default=4020,
                    help="flows answered with a full verdict and a msewatch.log line (p2p_likely)")
    ap.add_argument("--package-cost", type=float, default=(8.50e9 - 7.97e9) / 7170,
                    help="instructions per connection of the package without a bridge (docs/zeek.md)")
    ap.add_argument("--zeek", default=shutil.which("zeek") or "/opt/zeek/bin/zeek")
    ap.add_argument("--bare", action="store_true", help="zeek -b (default: default scripts, as plain zeek -r)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (instruction counts do not depend on it)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run")
    ap.add_argument("--no-valgrind", action="store_true", help="smoke test: no instruction counts")
    ap.add_argument("--idle", type=float, default=0.0,
                    help="seconds the client waits before `done` (checks that idle time costs nothing)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        print(__doc__[__doc__.index("Shapes"):])
        return 0
    if not Path(args.zeek).exists() and not shutil.which(args.zeek):
        print(f"zeek_ws_floor: no zeek at {args.zeek} (--zeek)", file=sys.stderr)
        return 2
    if not args.no_valgrind and not shutil.which("valgrind"):
        print("zeek_ws_floor: valgrind not found (or --no-valgrind)", file=sys.stderr)
        return 2
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
