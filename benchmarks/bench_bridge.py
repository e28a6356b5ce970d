"""The live bridge end to end: MSEWatch::flow_evidence frames in over a real WebSocket, verdict
frames out, on one core, against the floor of parsing and writing the same frames with orjson.

    .venv/bin/python benchmarks/bench_bridge.py [--n 60000] [--rate 25000[,10000]] [--seconds 4] [--messages FILE]
    .venv/bin/python benchmarks/bench_bridge.py --profile        # cProfile of the bridge process
    .venv/bin/python benchmarks/bench_bridge.py --smoke          # CI: small, nothing timed asserted

The messages are real evidence: the pcap path's evidence of the benchmark capture (the corpus
x15 of benchmarks/common.py, 7k flows) as the Zeek scripts publish it (evidence version 2, the
per-packet values packed; --evidence-version 1 for what older packages sent; the wire codec's
encoding; tests/zeek and tools/zeek_parity.py hold the two paths' evidence equal), or the raw
messages in FILE (one JSON message a line, e.g. recorded from a real Zeek). Each message gets
a fresh uid as it is sent, so no flow is answered from the bridge's cache of answered uids.

Measured in one run:
  floor     orjson.loads + orjson.dumps of each evidence frame's JSON (no typing, no engine,
            no socket): the cost of only reading and writing that much JSON in Python
  stages    in-process, per message: decode (msewatch.wire), engine (Engine.process_evidence),
            encode (every verdict); CPU time
  bridge    a `msewatch run`-equivalent process (msewatch.bridge.Bridge with the default
            Engine) connected to a local WebSocket peer that plays Zeek (tests/bridge's fake
            server protocol): the peer sends --n frames as fast as the bridge reads them and
            waits for every flow verdict; messages/s by the bridge process's CPU time (from
            /proc: the bridge's one core) and by wall time
  latency   the peer sends at each --rate messages/s for --seconds and times each verdict from the
            write of its evidence frame to the read of its verdict frame (both sockets, both
            event loops included: an upper bound of the latency the bridge adds); p50/p99/max
Targets (issue 12): >= 50,000 messages/s on one core; p99 <= 1 ms at 25k/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402

TOPIC = "zeek/msewatch/evidence"
VTOPIC = "zeek/msewatch/verdict"
ACK = json.dumps({"type": "ack", "endpoint": "bench-peer", "version": "8.0.10"}, separators=(",", ":"))


# --------------------------------------------------------------------------- the messages

def evidence_messages(path: str | None, smoke: bool, version: int = 2) -> list[bytes]:
    """Raw evidence messages (JSON bytes)."""
    if path:
        out = [line.strip().encode() for line in Path(path).read_text().splitlines() if line.strip()]
        if not out:
            raise SystemExit(f"{path}: no messages")
        return out
    from msewatch.engine import extract_evidence
    from msewatch.wire import events, v1

    if smoke:
        pcaps = sorted(str(p) for p in common.CORPUS.glob("*.pcap"))
    else:
        pcaps = [str(common.build_bench_capture(400_000))]
    return [v1.encode_event_message(TOPIC, events.evidence_to_event(e, version)).encode()
            for e in extract_evidence(pcaps)]


def split_uid(message: bytes) -> tuple[bytes, bytes, int]:
    """(text before the uid, text after it, uid length): each send puts a fresh uid in."""
    obj = json.loads(message)
    uid = obj["data"][2]["data"][1]["data"][1]["data"].encode()
    marker = b'{"@data-type":"string","data":"' + uid + b'"}'
    i = message.index(marker) + len(marker) - len(uid) - 2
    return message[:i], message[i + len(uid):], len(uid)


def fresh_uid(k: int, width: int) -> bytes:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    out = []
    for _ in range(width - 1):
        k, r = divmod(k, 62)
        out.append(digits[r])
    return ("B" + "".join(out)).encode()


def frame_header(n: int) -> bytes:
    """An unmasked server->client text frame header (RFC 6455 5.2)."""
    if n < 126:
        return bytes([0x81, n])
    if n < 65536:
        return bytes([0x81, 126]) + n.to_bytes(2, "big")
    return bytes([0x81, 127]) + n.to_bytes(8, "big")


# --------------------------------------------------------------------------- in-process measures

def cpu() -> float:
    return time.process_time()


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = cpu()
        fn()
        best = min(best, cpu() - t0)
    return best


def in_process(messages: list[bytes], n: int, repeat: int) -> dict:
    import gc

    import orjson

    from msewatch.engine import Engine
    from msewatch.wire import events, v1

    msgs = (messages * (n // len(messages) + 1))[:n]
    codec = v1.Codec()
    gc.collect()
    out: dict[str, float] = {}

    def floor():
        loads, dumps = orjson.loads, orjson.dumps
        for m in msgs:
            dumps(loads(m))

    out["floor"] = best_of(floor, repeat)
    evs = [events.decode_evidence_message(m, codec) for m in msgs[: len(messages)]]

    def decode():
        dec = events.decode_evidence_message
        for m in msgs:
            dec(m, codec)

    out["decode"] = best_of(decode, repeat)
    evs_n = (evs * (n // len(evs) + 1))[:n]

    verdicts: list = []

    def engine():
        eng = Engine()
        verdicts.clear()
        for ev in evs_n:
            verdicts.extend(eng.process_evidence(ev))

    out["engine"] = best_of(engine, repeat)

    def encode():
        enc = events.encode_verdict_bytes
        for v in verdicts:
            enc(v, VTOPIC, codec)

    out["encode"] = best_of(encode, repeat)
    out["verdicts"] = len(verdicts)
    return out


# --------------------------------------------------------------------------- the bridge process

BRIDGE_CHILD = r"""
import asyncio, os, sys
from msewatch.bridge import Bridge
from msewatch.config import Config
from msewatch.config_zeek import ZeekConfig
from msewatch.engine import Engine
url, profile = sys.argv[1], sys.argv[2]
cfg = ZeekConfig(endpoints=[url], reconnect={"initial": 0.05, "max": 0.2})
async def main():
    bridge = Bridge(cfg, Engine(Config()))
    bridge.install_signal_handlers()
    await bridge.run()
if profile:
    import cProfile, pstats
    pr = cProfile.Profile(); pr.enable()
    try:
        asyncio.run(main())
    finally:
        pr.disable(); pstats.Stats(pr, stream=sys.stderr).sort_stats("tottime").print_stats(30)
else:
    asyncio.run(main())
"""


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_UID_AT = b'"data":[{"@data-type":"string","data":"'


class Peer:
    """Zeek's side of the WebSocket API, lean: pre-built frames written straight to the
    transport, verdict frames timed where the protocol parses them."""

    def __init__(self, messages: list[bytes]) -> None:
        self.parts = [split_uid(m) for m in messages]
        self.sent_at: dict[bytes, float] = {}
        self.rtts: list[float] = []
        self.flow_verdicts = 0
        self.host_verdicts = 0
        self.connected = asyncio.Event()
        self.got = asyncio.Event()
        self.want = 0
        self.conn = None
        self.k = 0

    def frames(self, count: int, stamp: bool) -> bytes:
        out = []
        now = time.perf_counter()
        parts = self.parts
        for _ in range(count):
            head, tail, width = parts[self.k % len(parts)]
            uid = fresh_uid(self.k, width)
            self.k += 1
            payload = head + uid + tail
            out.append(frame_header(len(payload)))
            out.append(payload)
            if stamp:
                self.sent_at[uid] = now
        return b"".join(out)

    def on_verdict(self, data: bytes) -> None:
        if b'"MSEWatch::verdict"' in data:
            self.flow_verdicts += 1
            if self.sent_at:
                i = data.index(_UID_AT, data.index(b"MSEWatch::verdict")) + len(_UID_AT)
                t0 = self.sent_at.pop(data[i:data.index(b'"', i)], None)
                if t0 is not None:
                    self.rtts.append(time.perf_counter() - t0)
        else:
            self.host_verdicts += 1
        if self.flow_verdicts >= self.want:
            self.got.set()

    async def start(self):
        from websockets.asyncio.server import ServerConnection, serve

        peer = self

        class Conn(ServerConnection):
            def process_event(self, event):
                if peer.conn is self and getattr(event, "opcode", None) is not None and event.opcode.name == "TEXT":
                    peer.on_verdict(event.data)
                else:
                    super().process_event(event)

        async def handler(ws):
            await ws.recv()  # the subscription
            await ws.send(ACK)
            self.conn = ws
            self.connected.set()
            await ws.wait_closed()

        self.server = await serve(handler, "127.0.0.1", 0, create_connection=Conn, compression=None,
                                  max_size=None, ping_interval=None)
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/messages/json"

    async def send_all(self, n: int, chunk: int = 256) -> None:
        ws = self.conn
        self.want = self.flow_verdicts + n
        self.got.clear()
        left = n
        while left:
            c = min(chunk, left)
            ws.transport.write(self.frames(c, False))
            left -= c
            if ws.transport.get_write_buffer_size() > 1 << 20:
                await ws.drain()
            else:
                await asyncio.sleep(0)
        await asyncio.wait_for(self.got.wait(), 600)

    async def send_paced(self, rate: float, seconds: float, tick: float = 0.001) -> int:
        ws = self.conn
        total = int(rate * seconds)
        self.want = self.flow_verdicts + total
        self.got.clear()
        t0 = time.perf_counter()
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - t0) * rate) + 1)
            if due > sent:
                ws.transport.write(self.frames(due - sent, True))
                sent = due
            await asyncio.sleep(tick)
        await asyncio.wait_for(self.got.wait(), 600)
        return total


async def end_to_end(messages: list[bytes], n: int, rates: list[float], seconds: float, profile: bool) -> dict:
    peer = Peer(messages)
    url = await peer.start()
    env = {**os.environ, "PYTHONPATH": str(common.BRIDGE)}
    exe = common.VENV_BIN / "python"
    child = subprocess.Popen([str(exe) if exe.exists() else sys.executable, "-c", BRIDGE_CHILD, url,
                              "1" if profile else ""], env=env, stderr=subprocess.PIPE if profile else None)
    res: dict = {"paced": []}
    try:
        await asyncio.wait_for(peer.connected.wait(), 120)
        await peer.send_all(min(n, 2000))  # warm-up: imports done, caches filled
        c0, w0 = proc_cpu(child.pid), time.perf_counter()
        await peer.send_all(n)
        c1, w1 = proc_cpu(child.pid), time.perf_counter()
        res["n"] = n
        res["cpu"] = c1 - c0
        res["wall"] = w1 - w0
        for rate in rates:
            if rate <= 0 or seconds <= 0:
                continue
            peer.rtts.clear()
            peer.sent_at.clear()
            c0, w0 = proc_cpu(child.pid), time.perf_counter()
            total = await peer.send_paced(rate, seconds)
            c1, w1 = proc_cpu(child.pid), time.perf_counter()
            rtts = sorted(peer.rtts)
            res["paced"].append({"n": total, "rate": rate, "cpu": c1 - c0, "wall": w1 - w0, "p50": rtts[len(rtts) // 2],
                                 "p99": rtts[int(len(rtts) * 0.99)], "max": rtts[-1], "timed": len(rtts)})
        res["host_verdicts"] = peer.host_verdicts
    finally:
        child.send_signal(signal.SIGTERM)  # it flushes its queue to the peer, which keeps serving
        try:
            _, err = await asyncio.to_thread(child.communicate, timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            _, err = await asyncio.to_thread(child.communicate)
        if profile and err:
            print(err.decode(errors="replace"))
        peer.server.close()
    return res


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60_000, help="messages of the throughput run")
    ap.add_argument("--rate", default="25000", help="messages/s of the latency runs (comma-separated)")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of the latency run")
    ap.add_argument("--repeat", type=int, default=3, help="in-process rounds (best of)")
    ap.add_argument("--messages", help="raw evidence messages, one JSON message a line")
    ap.add_argument("--evidence-version", type=int, choices=(1, 2), default=2,
                    help="flow_evidence version of the generated messages (2: what the package publishes)")
    ap.add_argument("--profile", action="store_true", help="cProfile the bridge process")
    ap.add_argument("--smoke", action="store_true", help="CI: small, one round, nothing timed asserted")
    args = ap.parse_args(argv)
    if args.smoke:
        args.n, args.rate, args.seconds, args.repeat = 2000, "2000", 0.5, 1
    rates = [float(r) for r in str(args.rate).split(",") if r.strip()]

    print(common.machine_line())
    from msewatch import compiled, fastdecide

    print(compiled.status("_wire", "wire codec"))
    print(fastdecide.status())
    messages = evidence_messages(args.messages, args.smoke, args.evidence_version)
    size = statistics.mean(len(m) for m in messages)
    print(f"{len(messages):,} distinct evidence messages ({size:,.0f} bytes on average)"
          + (f" from {args.messages}" if args.messages else " of the corpus" if args.smoke else " of the benchmark capture"))

    ip = in_process(messages, min(args.n, 20_000), args.repeat)
    m = min(args.n, 20_000)
    floor_rate = m / ip["floor"]
    print(f"\nin-process, CPU, best of {args.repeat}, {m:,} messages:")
    print(f"  {'floor: orjson.loads + orjson.dumps':44} {1e6 * ip['floor'] / m:6.2f} us/msg {floor_rate:10,.0f} msgs/s")
    for stage in ("decode", "engine", "encode"):
        print(f"  {stage + (' (every verdict)' if stage == 'encode' else ''):44} {1e6 * ip[stage] / m:6.2f} us/msg")
    print(f"  ({ip['verdicts'] / m:.2f} verdicts per message)")

    load0 = os.getloadavg()
    res = asyncio.run(end_to_end(messages, args.n, rates, args.seconds, args.profile))
    load1 = os.getloadavg()
    rate_cpu = res["n"] / res["cpu"] if res["cpu"] > 0 else float("inf")
    rate_wall = res["n"] / res["wall"]
    print(f"\nend to end over a local WebSocket (load average {load0[0]:.1f} before, {load1[0]:.1f} after,"
          f" {os.cpu_count()} CPUs):")
    print(f"  {res['n']:,} messages: bridge process CPU {res['cpu']:.2f} s -> {rate_cpu:,.0f} msgs/s on one core;"
          f" wall {res['wall']:.2f} s -> {rate_wall:,.0f} msgs/s (peer and bridge share the machine)")
    ratio = rate_cpu / floor_rate
    print(f"  ratio bridge (end to end, CPU) / floor (orjson loads+dumps): {ratio:.2f}")
    common.summary("bridge end to end", f"{rate_cpu:,.0f} msgs/s by CPU on one core, {rate_wall:,.0f} by wall"
                   f" (target >= 50,000: {'meets' if rate_cpu >= 50_000 else 'MISSES'})")
    common.summary("bridge ratio vs orjson floor", f"{ratio:.2f} (floor {floor_rate:,.0f} msgs/s)")
    for p in res["paced"]:
        print(f"  paced at {p['rate']:,.0f} msgs/s for {p['wall']:.1f} s ({p['n']:,} messages, {p['timed']:,} timed):"
              f" round trip p50 {1e3 * p['p50']:.3f} ms, p99 {1e3 * p['p99']:.3f} ms, max {1e3 * p['max']:.1f} ms;"
              f" bridge CPU {100 * p['cpu'] / p['wall']:.0f} % of a core")
        target = " (target p99 <= 1 ms: " + ("meets" if p["p99"] <= 1e-3 else "MISSES") + ")" if p["rate"] >= 25_000 else ""
        common.summary(f"bridge latency at {p['rate']:,.0f}/s", f"p99 {1e3 * p['p99']:.3f} ms, p50 {1e3 * p['p50']:.3f} ms"
                       + target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
