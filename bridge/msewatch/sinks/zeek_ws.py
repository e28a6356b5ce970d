"""Verdicts back to Zeek over the WebSocket API, without losing them on a reconnect.

Verdicts wait in a bounded queue of encoded data-messages. They are written *without being
removed* - by the bridge's read path right after the messages that made them
(`VerdictSender.write_now`), or by the sender task (after a reconnect, or when the connection's
buffer is full) - and then confirmed by a WebSocket ping: the pong arrives only after the
server has read every frame before it, and only then are those entries removed. One ping is
in flight at a time, at least `ping_interval` (1 ms) after the previous one, and covers every
entry written before it; writing never waits for a pong (verdicts should not wait a round
trip). Pongs are awaited in order by a second task. A connection lost mid-batch leaves every unconfirmed entry in the
queue, to be sent again on the next connection: delivery is at-least-once (Zeek may see a
verdict twice, never zero times), in order.

When the queue is full the *new* verdict is dropped, counted in
`verdicts_dropped_total` and logged at ERROR (rate-limited).

Zeek keeps each flow's evidence until its verdict arrives and sends it again to a bridge
that (re)subscribes (zeek-scripts/delivery.zeek), so the same uid can come in twice.
`AnsweredCache` remembers the encoded verdicts of recent uids: a repeated uid is answered
with the same messages, without running the engine (whose host state would count the
flow twice). Zeek logs each flow verdict once whatever arrives twice.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from websockets.protocol import State

from ..metrics import Metrics

_OPEN = State.OPEN

log = logging.getLogger("msewatch.sinks.zeek_ws")


class VerdictQueue:
    """Bounded FIFO of (key, encoded message). Only the sender removes entries, and only
    after they were confirmed sent. `written` counts the entries at the head already written
    on the current connection (unconfirmed); `rewind()` makes them due again."""

    def __init__(self, maxsize: int, metrics: Metrics) -> None:
        self.maxsize = maxsize
        self.metrics = metrics
        self._items: collections.deque[tuple[str, str | bytes]] = collections.deque()
        self.written = 0
        self._unwritten = asyncio.Event()
        self._nonempty = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._last_drop_log = 0.0
        self._drops_since_log = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str, message: str | bytes) -> bool:
        """Queue one encoded verdict; False (and counted, logged) if the queue is full."""
        if len(self._items) >= self.maxsize:
            self.metrics.verdicts_dropped_total += 1
            self._drops_since_log += 1
            now = time.monotonic()
            if now - self._last_drop_log >= 10.0:
                log.error(
                    "verdict queue full (%d): DROPPED %d verdict(s), latest for %s; "
                    "Zeek is unreachable or too slow (raise zeek.queue_size?)",
                    self.maxsize,
                    self._drops_since_log,
                    key,
                    extra={"dropped": self._drops_since_log, "queue_size": self.maxsize},
                )
                self._last_drop_log = now
                self._drops_since_log = 0
            return False
        self._items.append((key, message))
        self.metrics.queue_depth = len(self._items)
        if not self._nonempty.is_set():
            self._nonempty.set()
            self._empty.clear()
        if not self._unwritten.is_set():
            self._unwritten.set()
        return True

    def peek(self, n: int) -> list[tuple[str, str | bytes]]:
        """Up to n entries from the head, left in the queue."""
        items = self._items
        return [items[i] for i in range(min(n, len(items)))]

    def take_unwritten(self, n: int) -> list[str | bytes]:
        """The messages of up to n entries after the written ones; they count as written."""
        items = self._items
        start = self.written
        end = min(start + n, len(items))
        out = [items[i][1] for i in range(start, end)]
        self.written = end
        if end == len(items):
            self._unwritten.clear()
        return out

    def rewind(self) -> None:
        """A new connection: every entry is due again (unconfirmed ones are sent twice)."""
        self.written = 0
        if self._items:
            self._unwritten.set()

    def confirm(self, n: int) -> None:
        """Remove the first n entries (they were sent)."""
        for _ in range(n):
            self._items.popleft()
        self.written = max(0, self.written - n)
        self.metrics.queue_depth = len(self._items)
        if not self._items:
            self._nonempty.clear()
            self._empty.set()

    async def wait_nonempty(self) -> None:
        await self._nonempty.wait()

    async def wait_unwritten(self) -> None:
        await self._unwritten.wait()

    async def wait_empty(self) -> None:
        await self._empty.wait()


class VerdictSender:
    """Drains a VerdictQueue into one WebSocket connection (one `run` per connection)."""

    def __init__(self, queue: VerdictQueue, metrics: Metrics, confirm_timeout: float = 10.0, batch: int = 1000):
        self.queue = queue
        self.metrics = metrics
        self.confirm_timeout = confirm_timeout
        self.batch = batch
        self._ws: Any = None  # the connection run() writes to
        self._unpinged = 0  # entries write_now() wrote that no ping covers yet
        self._wrote = asyncio.Event()  # write_now() wrote: run() pings for it
        self._pending: collections.deque[tuple[Any, int]] = collections.deque()  # pings in flight, entries each confirms
        self.ping_interval = 0.001  # seconds at least between two pings

    def write_now(self, ws: Any) -> int:
        """Write every verdict queued and not yet written, now, in one write, from the
        caller (the read path, after each group of messages: a message's verdict does not
        wait for a later message's, nor for the sender task's turn). run() sends the ping that
        confirms them. Returns how many were written: 0 when nothing is due, when run() does
        not serve `ws`, or when the connection is not plainly open or its buffer is full (then
        run() writes them, with the library's flow control)."""
        queue = self.queue
        if ws is not self._ws or not queue._unwritten.is_set() or ws.protocol.state is not _OPEN or ws.paused:
            return 0
        batch = queue.take_unwritten(self.batch)
        ws.send_texts(batch)
        ws.send_data()
        self._unpinged += len(batch)
        if not self._pending:  # else the confirmer wakes run() when that ping's pong is in
            self._wrote.set()
        return len(batch)

    async def run(self, ws: Any) -> None:
        """Send on `ws` (a sources.zeek_ws.BridgeConnection, as open_session makes) until the
        connection fails (the exception propagates) or the task is cancelled. Unconfirmed
        entries stay queued and are sent again on the next connection."""
        queue = self.queue
        queue.rewind()
        self._ws, self._unpinged = ws, 0
        self._wrote.clear()
        self._pending = pending = collections.deque()
        loop = asyncio.get_running_loop()
        last_ping = 0.0
        sent = asyncio.Event()
        confirmer = asyncio.create_task(self._confirm(pending, sent), name="verdict-confirmer")
        try:
            while True:
                # entries written (here or by write_now()) are confirmed by one ping, sent when no
                # ping is in flight and not sooner than ping_interval after the last (a ping and
                # its pong cost both sides a frame each)
                while not queue._unwritten.is_set() and not (self._unpinged and not pending):
                    self._wrote.clear()
                    waiters = {asyncio.create_task(queue.wait_unwritten()), asyncio.create_task(self._wrote.wait())}
                    done, _ = await asyncio.wait(waiters | {confirmer}, return_when=asyncio.FIRST_COMPLETED)
                    for w in waiters:
                        w.cancel()
                    if confirmer in done:
                        confirmer.result()  # raises what ended it
                        return
                batch = queue.take_unwritten(self.batch)
                if batch:
                    async with ws.send_context():  # BridgeConnection frames the batch, written in one go
                        ws.send_texts(batch)
                    self._unpinged += len(batch)
                if not self._unpinged or pending:
                    continue  # nothing to confirm, or the pong in flight wakes this loop (_confirm)
                if loop.time() - last_ping < self.ping_interval:
                    await asyncio.sleep(self.ping_interval - (loop.time() - last_ping))
                n, self._unpinged = self._unpinged, 0  # every entry written so far, before this ping
                last_ping = loop.time()
                pending.append((await ws.ping(), n))
                sent.set()
        finally:
            self._ws = None
            confirmer.cancel()
            await asyncio.gather(confirmer, return_exceptions=True)

    async def _confirm(self, pending: collections.deque, sent: asyncio.Event) -> None:
        """Pongs in order: each confirms the entries written before its ping."""
        while True:
            while not pending:
                sent.clear()
                await sent.wait()
            pong, n = pending[0]
            await asyncio.wait_for(pong, self.confirm_timeout)
            pending.popleft()
            self.queue.confirm(n)
            self.metrics.verdicts_sent_total += n
            if self._unpinged:
                self._wrote.set()  # run() pings for what write_now() wrote meanwhile


class AnsweredCache:
    """Bounded LRU: flow uid -> the verdicts its evidence produced (the encoded message, or a
    tuple of (key, encoded message)).

    Kept in up to SEGMENTS dicts of maxsize // SEGMENTS uids, the newest last; a put into a
    full newest segment starts a new one and drops the oldest whole. One OrderedDict under
    this churn (a uid in, the oldest out, every message) rebuilt its whole table every
    ~maxsize puts: a 4 ms pause of the event loop at the default 50,000. Here the largest
    step is dropping one segment. A hit in an older segment moves the uid to the newest."""

    SEGMENTS = 8

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._nseg = max(1, min(self.SEGMENTS, maxsize))
        self._seg = max(1, maxsize // self._nseg)
        self._segments: list[dict[str, Any]] = [{}]  # oldest first; the last is filled

    def __len__(self) -> int:
        return sum(len(s) for s in self._segments)

    def get(self, uid: str) -> Any:
        segments = self._segments
        hit = segments[-1].get(uid)
        if hit is not None:
            return hit
        for seg in segments[-2::-1]:
            hit = seg.pop(uid, None)
            if hit is not None:
                self.put(uid, hit)  # the most recent now
                return hit
        return None

    def put(self, uid: str, answers: Any) -> None:
        if self.maxsize <= 0 or not uid:
            return
        segments = self._segments
        newest = segments[-1]
        if len(newest) >= self._seg and uid not in newest:
            newest = {}
            segments.append(newest)
            if len(segments) > self._nseg:
                del segments[0]
        newest[uid] = answers
