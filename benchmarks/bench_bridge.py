"""The live bridge end to end: MSEWatch::flow_evidence frames in over a real WebSocket, verdict
frames out, on one core, against the floor of parsing and writing the same frames with orjson.

    .venv/bin/python benchmarks/bench_bridge.py [--n 60000] [--rate 25000[,10000]] [--seconds 4] [--messages FILE]
                                                [--tick-us 200] [--bridge-cpu 0 --peer-cpu 1 | --share] [--catch-up]
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
            Engine, gc frozen as `msewatch run` has it) connected to a local WebSocket peer
            that plays Zeek (Peer: a hand-written server on a raw socket, the sending side in
            this process, the reading side forked): the peer sends --n frames as fast as the
            bridge reads them and
            waits for every flow verdict; messages/s by the bridge process's CPU time (from
            /proc: the bridge's one core) and by wall time
  latency   the peer sends at each --rate messages/s for --seconds: each frame in its own send() at
            its own deadline (t0 + k/rate; --tick-us N: the frames due every N us in one send()),
            stamped right before it, from this process; a forked receiver reads the verdicts off
            the raw socket and stamps each with the return of its read. Printed: that round trip
            (both kernels' loopback, the bridge, the receiver's read: an upper bound of what the
            bridge adds), the latency added inside the bridge (evidence frame read -> its
            verdict frames written, measured in the bridge process), p50/p99/max of each, the
            bridge's garbage collections, the CPU of the bridge and of the peer's two sides, the
            load average. BENCH_STALLS=1 also lists the reads that took > 1 ms of wall time with
            their CPU time (the machine's share of a stall, not the bridge's).
            Each rate runs twice on 2 CPUs or more: the bridge pinned to a CPU of its own and the
            peer's two processes to another (as a sensor runs a bridge: on a core Zeek's workers
            do not use), then all three on all CPUs (--share: only that; --bridge-cpu/--peer-cpu:
            only those). The peer's collector is off in the paced run. When the sender was
            descheduled for more than 1 ms it goes on at the rate from then on and says so
            (--catch-up: it sends the frames due at once, bursts of up to ~1,000 frames that
            the bridge then drains: the tail of most runs over 1 ms before the third stop).
Targets (issue 12): >= 50,000 messages/s on one core; p99 <= 1 ms at 25k/s.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import signal
import socket
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
import asyncio, json, os, signal, sys, time
from msewatch.bridge import Bridge
from msewatch.config import Config
from msewatch.config_zeek import ZeekConfig
from msewatch.engine import Engine
from msewatch.sources import zeek_ws as source
url, profile, out = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = ZeekConfig(endpoints=[url], reconnect={"initial": 0.05, "max": 0.2})

# The latency the bridge adds, measured inside it: from the return of the read that brought a
# message's evidence frame (BridgeConnection.data_received) to the write of the frames that
# carry its verdicts (BridgeConnection.send_data, the one transport.write of a batch). Kept
# cheap (a few list appends per read and per write, paired in dump()): its cost is the
# bridge's CPU in this run. Entries are written in the order they were queued (no compact
# labels here: the peer sends no hello), and no entry leaves the queue during a read (the
# confirmer runs between reads), so a read queued len(queue) after - before of them.
clock = time.perf_counter
# flat lists of floats and ints, which the garbage collector does not track (tuples it would)
reads, read_n = [], []  # the time a read began, and the verdicts it queued
writes, write_n, write_flows = [], [], []  # the time of a write, the verdicts it carried, the flow verdicts among them
stalls = []  # BENCH_STALLS=1: reads that took > 1 ms of wall time: (wall, CPU of this thread, bytes)
_data_received, _send_texts, _send_data = (source.BridgeConnection.data_received,
                                           source.BridgeConnection.send_texts, source.BridgeConnection.send_data)
_write_texts = getattr(source.BridgeConnection, "write_texts", None)  # None: a bridge from before it (A/B)
queue = None  # the bridge's VerdictQueue (main)
def data_received(self, data):
    t = clock()
    n = len(queue)
    _data_received(self, data)
    n = len(queue) - n
    if n:
        reads.append(t)
        read_n.append(n)
if os.environ.get("BENCH_STALLS"):
    def data_received(self, data, thread_time=time.thread_time):
        c0 = thread_time()
        t = clock()
        n = len(queue)
        _data_received(self, data)
        n = len(queue) - n
        if n:
            reads.append(t)
            read_n.append(n)
        w = clock() - t
        if w > 0.001:
            stalls.append((w, thread_time() - c0, len(data)))
# The time each flow verdict was written, in the order written: the parent pairs them with the
# uids its receiver read, in the same order (one TCP stream), and with its write time of each
# uid's evidence frame: the latency the bridge adds from the frame's write into its socket to
# its verdict's write out (CLOCK_MONOTONIC, one clock for all processes of the machine).
FLOW = b'"MSEWatch::verdict"'
framed = [0, 0, 0]  # verdicts framed and not yet written; flow verdicts among them; inside write_texts
def send_texts(self, messages):
    framed[0] += len(messages)
    for m in messages:
        if FLOW in m:
            framed[1] += 1
    _send_texts(self, messages)
def send_data(self):
    _send_data(self)
    if framed[0] and not framed[2]:
        writes.append(clock())
        write_n.append(framed[0])
        write_flows.append(framed[1])
        framed[0] = framed[1] = 0
def write_texts(self, messages):  # send_texts + send_data in one (the read path): stamped once, after
    framed[2] = 1
    _write_texts(self, messages)
    framed[2] = 0
    writes.append(clock())
    n, flows = framed[0], framed[1]  # counted by send_texts when write_texts fell back to it
    if not n:
        n = len(messages)
        for m in messages:
            if FLOW in m:
                flows += 1
    write_n.append(n)
    write_flows.append(flows)
    framed[0] = framed[1] = 0
source.BridgeConnection.data_received = data_received
source.BridgeConnection.send_texts = send_texts
source.BridgeConnection.send_data = send_data
if _write_texts is not None:
    source.BridgeConnection.write_texts = write_texts
if os.environ.get("BENCH_FLUSH_AFTER"):  # A/B of the read path's write grouping (seconds)
    source.FLUSH_AFTER = float(os.environ["BENCH_FLUSH_AFTER"])

import gc
gc_pauses = []  # (generation, seconds) of each collection
gc_start = [0.0]
def on_gc(phase, info):
    if phase == "start":
        gc_start[0] = clock()
    else:
        gc_pauses.append((info["generation"], clock() - gc_start[0]))
gc.callbacks.append(on_gc)

def reset():
    for x in (reads, read_n, writes, write_n, write_flows):
        x.clear()
    gc_pauses.clear()
    stalls.clear()
def dump():
    read_at = [t for t, n in zip(reads, read_n) for _ in range(n)]
    written_at = [t for t, n in zip(writes, write_n) for _ in range(n)]
    k = len(written_at) - min(len(read_at), len(written_at))  # written, queued before the reset: skipped
    s = sorted(w - r for r, w in zip(read_at, written_at[k:]))
    wrote = [t for t, f in zip(writes, write_flows) for _ in range(f)]
    res = {"n": len(s), "wrote": wrote, "gc": [[sum(1 for g, _ in gc_pauses if g == gen), max([d for g, d in gc_pauses if g == gen] or [0.0]),
                                sum(d for g, d in gc_pauses if g == gen)] for gen in range(3)]}
    if stalls:
        res["stalls"] = sorted(stalls, reverse=True)[:8]
        res["stalls_n"] = len(stalls)
    if s:
        res.update(p50=s[len(s) // 2], p99=s[int(len(s) * 0.99)], max=s[-1])
    with open(out + ".tmp", "w") as f:
        json.dump(res, f)
    os.replace(out + ".tmp", out)

async def main():
    try:
        bridge = Bridge(cfg, Engine(Config()), freeze_gc=True)  # as `msewatch run` (run_bridge) makes it
    except TypeError:  # a bridge from before freeze_gc (A/B with MSEWATCH_BENCH_BRIDGE)
        bridge = Bridge(cfg, Engine(Config()))
    global queue
    queue = bridge.queue
    bridge.install_signal_handlers()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, reset)
    loop.add_signal_handler(signal.SIGUSR2, dump)
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
_FLOW_EVENT = b'"MSEWatch::verdict"'
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def timer_slack(ns: int) -> None:
    """prctl(PR_SET_TIMERSLACK): sleeps end within ns of their deadline (default 50 us)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, ns, 0, 0, 0)
    except Exception:
        pass


def read_client_frame(sock, buf: bytes) -> tuple[int, bytes, bytes]:
    """One whole (masked) client frame from buf + the socket: (opcode, payload, rest)."""
    from websockets.frames import apply_mask

    while True:
        if len(buf) >= 2:
            ln, hdr = buf[1] & 0x7F, 2
            if ln == 126 and len(buf) >= 4:
                ln, hdr = int.from_bytes(buf[2:4], "big"), 4
            elif ln == 127 and len(buf) >= 10:
                ln, hdr = int.from_bytes(buf[2:10], "big"), 10
            masked = buf[1] & 0x80
            end = hdr + (4 if masked else 0) + ln
            if ln < 126 or hdr > 2:
                if len(buf) >= end:
                    payload = buf[end - ln:end]
                    if masked:
                        payload = apply_mask(payload, buf[end - ln - 4:end - ln])
                    return buf[0] & 0x0F, payload, buf[end:]
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the bridge closed the connection")
        buf += data


def receiver_main(sock, ctl, lock, buf: bytes) -> None:
    """The peer's reading side, a process of its own: reads the raw socket, answers pings
    and the close, finds each flow verdict's uid with bytes.find and stamps it with the time
    its read returned. Commands on `ctl`: ("want", flow verdicts, record) -> answers
    ("done", flow, host, uids, times) once that many flow verdicts arrived; ("stop",)."""
    import select

    from websockets.frames import apply_mask

    import gc

    gc.collect()
    gc.freeze()  # what the parent built before the fork is never walked here
    clock = time.perf_counter
    flow = host = 0
    want, record = None, False
    uids: list[bytes] = []
    times: list[float] = []
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)
    poll.register(ctl.fileno(), select.POLLIN)
    recv = sock.recv
    eof = False
    while not eof:
        ready = poll.poll()
        if any(fd == ctl.fileno() for fd, _ in ready):
            cmd = ctl.recv()
            if cmd[0] == "stop":
                return
            want, record = cmd[1], cmd[2]
            uids, times = [], []
        if any(fd == sock.fileno() for fd, _ in ready):
            data = recv(1 << 18)
            t = clock()
            if not data:
                eof = True
            buf = buf + data if buf else data
            n, pos = len(buf), 0
            while n - pos >= 2:
                b1 = buf[pos + 1]
                ln, hdr = b1 & 0x7F, 2
                if ln == 126:
                    if n - pos < 4:
                        break
                    ln, hdr = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
                elif ln == 127:
                    if n - pos < 10:
                        break
                    ln, hdr = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
                start = pos + hdr + 4  # a client's frames are masked
                end = start + ln
                if end > n:
                    break
                payload = apply_mask(buf[start:end], buf[start - 4:start])
                op = buf[pos] & 0x0F
                pos = end
                if op == 1:
                    i = payload.find(_FLOW_EVENT)
                    if i >= 0:
                        flow += 1
                        if record:
                            j = payload.index(_UID_AT, i) + len(_UID_AT)
                            uids.append(payload[j:payload.index(b'"', j)])
                            times.append(t)
                    else:
                        host += 1
                elif op == 9:  # ping: pong (the bridge confirms its verdicts with them)
                    with lock:
                        sock.sendall(bytes((0x8A, len(payload))) + payload)
                elif op == 8:  # close: echo it
                    with lock:
                        sock.sendall(bytes((0x88, len(payload[:2]))) + payload[:2])
            buf = buf[pos:]
        if want is not None and flow >= want:
            ctl.send(("done", flow, host, uids, times))
            want, uids, times = None, [], []
    if want is not None:
        ctl.send(("done", flow, host, uids, times))


class Peer:
    """Zeek's side of the WebSocket API, lean and in two processes so that neither side's
    work delays the other's clock: this process writes pre-built evidence frames to the raw
    socket (paced: each frame written at its own deadline, t0 + k/rate, and stamped right
    before its write), a forked receiver reads the verdict frames from the same socket and
    stamps each with the return of its read. A hand-written handshake, no websockets parser
    on the hot path."""

    def __init__(self, messages: list[bytes]) -> None:
        self.parts = [split_uid(m) for m in messages]
        self.k = 0
        self.last_sent: list[float] = []  # send_paced: the write time of each verdict's evidence, in verdict order
        self.behind: list[int] = []  # send_paced: frames due at once each time the sender was over 1 ms late
        self.flow_verdicts = 0
        self.host_verdicts = 0
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.url = f"ws://127.0.0.1:{self.lsock.getsockname()[1]}/v1/messages/json"
        self.sock = None
        self.receiver = None
        self.lock = None
        self.ctl = None

    def accept(self, timeout: float) -> None:
        """The opening handshake (RFC 6455 4.2.2), the subscription, the ack; then the receiver."""
        import multiprocessing as mp

        self.lsock.settimeout(timeout)
        sock, _ = self.lsock.accept()
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the bridge closed the connection in the handshake")
            data += chunk
        head, buf = data.split(b"\r\n\r\n", 1)
        key = next(v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
                   if k.strip().lower() == b"sec-websocket-key")
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        op, _subscription, buf = read_client_frame(sock, buf)
        assert op == 1, op
        sock.sendall(frame_header(len(ACK)) + ACK.encode())
        sock.settimeout(None)
        self.sock = sock
        ctx = mp.get_context("fork")
        self.lock = ctx.Lock()
        self.ctl, child_end = ctx.Pipe()
        self.receiver = ctx.Process(target=receiver_main, args=(sock, child_end, self.lock, buf), daemon=True)
        self.receiver.start()

    def frame(self, k: int) -> tuple[bytes, bytes]:
        head, tail, width = self.parts[k % len(self.parts)]
        uid = fresh_uid(k, width)
        payload = head + uid + tail
        return frame_header(len(payload)) + payload, uid

    def _expect(self, n: int, record: bool) -> int:
        want = self.flow_verdicts + n
        self.ctl.send(("want", want, record))
        return want

    def _wait(self, timeout: float = 600) -> tuple[list[bytes], list[float]]:
        if not self.ctl.poll(timeout):
            raise TimeoutError("verdicts missing")
        _, self.flow_verdicts, self.host_verdicts, uids, times = self.ctl.recv()
        return uids, times

    def send_all(self, n: int, chunk: int = 32) -> None:
        """n frames as fast as the bridge reads them (TCP's flow control); waits for every verdict."""
        self._expect(n, False)
        sock, lock = self.sock, self.lock
        left = n
        while left:
            c = min(chunk, left)
            data = b"".join(self.frame(k)[0] for k in range(self.k, self.k + c))
            self.k += c
            left -= c
            with lock:
                sock.sendall(data)
        self._wait()

    def send_paced(self, rate: float, seconds: float, tick: float = 0.0,
                   catch_up: bool = False) -> tuple[int, list[float], float]:
        """rate frames/s for `seconds`: frame k is due at t0 + k/rate and written in its own
        send() as soon as it is due, stamped right before it; the sender sleeps until the next
        deadline. With `tick` (seconds), it wakes every tick and writes the frames due in one
        send() (a burst), all stamped with the time of that write. When the sender finds itself
        more than 1 ms late (this process was descheduled: 3-40 ms at times on 2 busy CPUs), it
        goes on at `rate` from that moment, or with `catch_up` sends every frame due at once (up
        to 1,000 in one go: a burst the bridge then drains, which is not the 25k/s the target
        speaks of). `self.behind` lists those moments. Returns (frames, round trips, this
        process's CPU seconds)."""
        total = int(rate * seconds)
        self._expect(total, True)
        sock, lock, clock, sleep = self.sock, self.lock, time.perf_counter, time.sleep
        sent_at: dict[bytes, float] = {}
        frames = [self.frame(self.k + i) for i in range(min(total, 64))]
        import gc

        gc.collect()
        gc.disable()  # the peer plays Zeek: no pause of its own collector in the paced run (enabled again below)
        c0 = time.process_time()
        t0 = clock()
        i = 0
        behind = []  # how many frames were due at once when the sender was late by more than 1 ms
        late = max(2, int(rate / 1000))
        while i < total:
            now = clock()
            due = min(total, int((now - t0) * rate) + 1)
            if due - i > late:  # the sender itself was late (descheduled): by due - i frames
                behind.append(due - i)
                if not catch_up:  # go on at `rate` from here: no burst of what the sender's own stall held back
                    t0 = now - i / rate
                    due = i + 1
            if tick:  # the frames due, in one write (a burst, as an event loop flushes them)
                burst = [frames[j] if j < len(frames) else self.frame(self.k + j) for j in range(i, due)]
                with lock:
                    t = clock()
                    sock.sendall(b"".join(f for f, _ in burst))
                for _, uid in burst:
                    sent_at[uid] = t
                i = due
            while i < due:
                if i < len(frames):
                    data, uid = frames[i]
                else:
                    data, uid = self.frame(self.k + i)
                with lock:
                    sent_at[uid] = clock()
                    sock.sendall(data)
                i += 1
            delay = max(t0 + i / rate - clock(), tick)
            if delay > 0:
                sleep(delay)
        cpu = time.process_time() - c0
        gc.enable()
        self.k += total
        self.behind = behind
        uids, times = self._wait()
        self.last_sent = [sent_at[u] for u in uids]  # in the order the verdicts came
        rtts = [t - sent_at[u] for u, t in zip(uids, times)]
        return total, rtts, cpu

    def close(self) -> None:
        if self.receiver is not None:
            try:
                self.ctl.send(("stop",))
            except OSError:
                pass
            self.receiver.join(10)
            if self.receiver.is_alive():
                self.receiver.kill()
        if self.sock is not None:
            self.sock.close()
        self.lsock.close()


def percentiles(values: list[float]) -> dict:
    s = sorted(values)
    if not s:
        return {"n": 0}
    return {"n": len(s), "p50": s[len(s) // 2], "p99": s[int(len(s) * 0.99)], "max": s[-1]}


def bridge_latency(child: subprocess.Popen, out: Path, timeout: float = 30) -> dict:
    """The bridge's own measure since the last reset (SIGUSR2 -> a JSON file)."""
    out.unlink(missing_ok=True)
    child.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while not out.exists():
        if time.monotonic() > deadline:
            return {"n": 0}
        time.sleep(0.01)
    return json.loads(out.read_text())


def latency_placements(bridge_cpu: int | None, peer_cpu: int | None, share: bool) -> list[tuple[str, int | None, int | None]]:
    """Where the paced runs put the bridge and the peer: (name, bridge CPU, peer CPU), None for
    any CPU. On 2 CPUs or more: first the bridge on a CPU of its own and the peer's two
    processes on another (as a sensor runs it: Zeek's workers on their cores, each bridge on
    one), then, unless --bridge-cpu/--peer-cpu chose, all three on all CPUs, the scheduler
    placing them. With --share only the latter."""
    if bridge_cpu is not None or peer_cpu is not None:
        return [("pinned", bridge_cpu, peer_cpu)]
    cpus = sorted(os.sched_getaffinity(0))
    if share or len(cpus) < 2:
        return [("shared", None, None)]
    return [("pinned", cpus[0], cpus[1]), ("shared", None, None)]


def end_to_end(messages: list[bytes], n: int, rates: list[float], seconds: float, profile: bool,
               tick: float = 0.0, bridge_cpu: int | None = None, peer_cpu: int | None = None,
               placements: list | None = None, catch_up: bool = False) -> dict:
    import tempfile

    peer = Peer(messages)
    env = {**os.environ, "PYTHONPATH": str(common.BRIDGE)}
    exe = common.VENV_BIN / "python"
    tmp = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    out = tmp / "latency.json"
    child = subprocess.Popen([str(exe) if exe.exists() else sys.executable, "-c", BRIDGE_CHILD, peer.url,
                              "1" if profile else "", str(out)], env=env, stderr=subprocess.PIPE if profile else None)
    every_cpu = os.sched_getaffinity(0)
    if bridge_cpu is not None:
        os.sched_setaffinity(child.pid, {bridge_cpu})
    if peer_cpu is not None:
        os.sched_setaffinity(0, {peer_cpu})
    timer_slack(1000)
    res: dict = {"paced": []}
    try:
        peer.accept(120)
        if peer_cpu is not None:
            os.sched_setaffinity(peer.receiver.pid, {peer_cpu})
        peer.send_all(min(n, 2000))  # warm-up: imports done, caches filled
        c0, w0 = proc_cpu(child.pid), time.perf_counter()
        peer.send_all(n)
        c1, w1 = proc_cpu(child.pid), time.perf_counter()
        res["n"] = n
        res["cpu"] = c1 - c0
        res["wall"] = w1 - w0
        runs = [(rate, place) for rate in rates for place in (placements or [("as started", bridge_cpu, peer_cpu)])]
        for rate, (where, b_cpu, p_cpu) in runs:
            if rate <= 0 or seconds <= 0:
                continue
            for pid, cpu in ((child.pid, b_cpu), (0, p_cpu), (peer.receiver.pid, p_cpu)):
                os.sched_setaffinity(pid, every_cpu if cpu is None else {cpu})
            child.send_signal(signal.SIGUSR1)  # the bridge's own measure starts afresh
            time.sleep(0.05)
            load0 = os.getloadavg()[0]
            c0, r0, w0 = proc_cpu(child.pid), proc_cpu(peer.receiver.pid), time.perf_counter()
            total, rtts, sender_cpu = peer.send_paced(rate, seconds, tick, catch_up)
            c1, r1, w1 = proc_cpu(child.pid), proc_cpu(peer.receiver.pid), time.perf_counter()
            inside = bridge_latency(child, out)
            wrote = inside.pop("wrote", [])
            # frame in -> frame out: the evidence frame's write by the peer -> its verdict's write by the
            # bridge, where the counts agree (verdicts in the order both sides saw them)
            added = (percentiles([w - s for w, s in zip(wrote, peer.last_sent)])
                     if len(wrote) == len(peer.last_sent) else {"n": 0})
            res["paced"].append({"behind": peer.behind, "catch_up": catch_up, "n": total, "rate": rate, "where": where, "cpus": (b_cpu, p_cpu), "cpu": c1 - c0, "wall": w1 - w0, "rtt": percentiles(rtts),
                                 "inside": inside, "added": added, "sender_cpu": sender_cpu,
                                 "receiver_cpu": r1 - r0, "load": (load0, os.getloadavg()[0])})
        res["host_verdicts"] = peer.host_verdicts
    finally:
        child.send_signal(signal.SIGTERM)  # it flushes its queue to the peer, which keeps serving
        try:
            _, err = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            _, err = child.communicate()
        if profile and err:
            print(err.decode(errors="replace"))
        peer.close()
        out.unlink(missing_ok=True)
        tmp.rmdir()
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
    ap.add_argument("--tick-us", type=float, default=0.0,
                    help="the paced sender sleeps at least this long between writes (0: until each frame's deadline)")
    ap.add_argument("--bridge-cpu", type=int, help="pin the bridge process to this CPU")
    ap.add_argument("--peer-cpu", type=int, help="pin the peer (sender and receiver) to this CPU")
    ap.add_argument("--catch-up", action="store_true",
                    help="a paced sender that fell behind sends every frame due at once (default: goes on at the rate)")
    ap.add_argument("--share", action="store_true",
                    help="paced runs only with the bridge and the peer on all CPUs (default: pinned apart, then shared)")
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
    res = end_to_end(messages, args.n, rates, args.seconds, args.profile, args.tick_us * 1e-6, args.bridge_cpu,
                     args.peer_cpu, latency_placements(args.bridge_cpu, args.peer_cpu, args.share), args.catch_up)
    load1 = os.getloadavg()
    rate_cpu = res["n"] / res["cpu"] if res["cpu"] > 0 else float("inf")
    rate_wall = res["n"] / res["wall"]
    pinned = (f"; bridge pinned to CPU {args.bridge_cpu}, peer to CPU {args.peer_cpu}"
              if args.bridge_cpu is not None or args.peer_cpu is not None else "")
    print(f"\nend to end over a local WebSocket (load average {load0[0]:.1f} before, {load1[0]:.1f} after,"
          f" {os.cpu_count()} CPUs{pinned}):")
    print(f"  {res['n']:,} messages: bridge process CPU {res['cpu']:.2f} s -> {rate_cpu:,.0f} msgs/s on one core;"
          f" wall {res['wall']:.2f} s -> {rate_wall:,.0f} msgs/s (peer and bridge share the machine)")
    ratio = rate_cpu / floor_rate
    print(f"  ratio bridge (end to end, CPU) / floor (orjson loads+dumps): {ratio:.2f}")
    common.summary("bridge end to end", f"{rate_cpu:,.0f} msgs/s by CPU on one core, {rate_wall:,.0f} by wall"
                   f" (target >= 50,000: {'meets' if rate_cpu >= 50_000 else 'MISSES'})")
    common.summary("bridge ratio vs orjson floor", f"{ratio:.2f} (floor {floor_rate:,.0f} msgs/s)")

    def ms(d: dict) -> str:
        if not d.get("n"):
            return "no samples"
        return f"p50 {1e3 * d['p50']:.3f} ms, p99 {1e3 * d['p99']:.3f} ms, max {1e3 * d['max']:.1f} ms"

    for p in res["paced"]:
        rtt, inside, added = p["rtt"], p["inside"], p["added"]
        b_cpu, p_cpu = p["cpus"]
        where = (f"the bridge on CPU {b_cpu}, the peer on CPU {p_cpu}" if b_cpu is not None or p_cpu is not None
                 else "the bridge and the peer on all CPUs")
        print(f"  paced at {p['rate']:,.0f} msgs/s for {p['wall']:.1f} s ({p['n']:,} messages, {rtt['n']:,} timed,"
              f" load average {p['load'][0]:.1f} -> {p['load'][1]:.1f}), {where}:")
        print(f"    round trip at the peer (evidence frame written -> verdict frame read): {ms(rtt)}")
        print(f"    added by the bridge, frame in -> frame out (the peer's write of an evidence frame -> the bridge's"
              f" write of its verdict, {added['n']:,} flow verdicts): {ms(added)}")
        print(f"    of which in the bridge (evidence read -> its verdict frames written, {inside['n']:,} verdicts):"
              f" {ms(inside)}")
        if inside.get("stalls"):
            print(f"    reads that took > 1 ms of wall time ({inside['stalls_n']}), the longest: " + ", ".join(
                f"{1e3 * w:.1f} ms wall / {1e3 * c:.1f} ms CPU / {n // 1024} KiB" for w, c, n in inside["stalls"][:4]))
        if inside.get("gc"):
            print("    the bridge's garbage collections: " + ", ".join(
                f"gen{g} {c} (longest {1e3 * d:.2f} ms, in all {1e3 * t:.1f} ms)" for g, (c, d, t) in enumerate(inside["gc"])))
        if p["behind"]:
            print(f"    the peer's sender was descheduled for more than 1 ms {len(p['behind'])} time(s), up to"
                  f" {1e3 * max(p['behind']) / p['rate']:.1f} ms; " + (
                      f"it then sent the frames due at once (up to {max(p['behind'])})" if p.get("catch_up") else
                      "it went on at the rate from there (--catch-up: the frames due at once)"))
        print(f"    CPU: bridge {100 * p['cpu'] / p['wall']:.0f} % of a core; peer sender"
              f" {100 * p['sender_cpu'] / p['wall']:.0f} %, receiver {100 * p['receiver_cpu'] / p['wall']:.0f} %")
        target = (" (target p99 <= 1 ms: " + ("meets" if added.get("p99", 1) <= 1e-3 else "MISSES") + ")"
                  if p["rate"] >= 25_000 else "")
        if added.get("n"):
            common.summary(f"bridge latency at {p['rate']:,.0f}/s, {p['where']}", f"added (frame in -> frame out) p99"
                           f" {1e3 * added['p99']:.3f} ms, p50 {1e3 * added['p50']:.3f} ms" + target
                           + f"; round trip at the peer p99 {1e3 * rtt['p99']:.3f} ms"
                           + (f"; in the bridge p99 {1e3 * inside['p99']:.3f} ms" if inside.get("n") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
