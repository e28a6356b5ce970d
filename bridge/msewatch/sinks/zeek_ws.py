"""Verdicts back to Zeek over the WebSocket API, without losing them on a reconnect.

Verdicts wait in a bounded queue of encoded data-messages. They are written *without being
removed* - by the bridge's read path right after the messages that made them
(`VerdictSender.write_now`), or by the sender task (after a reconnect, or when the connection's
buffer is full) - and then confirmed by a WebSocket ping: the pong arrives only after the
server has read every frame before it, and only then are those entries removed. One ping is
in flight at a time, at least `ping_interval` (5 ms) after the previous one, and covers every
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

Compact labels (docs/zeek.md, "Full verdicts and compact labels"): a flow verdict whose
label is not in `zeek.full_verdicts` is queued with its conn.log label too. On a connection
whose Zeek package said it understands `MSEWatch::flow_labels` (its `MSEWatch::hello`),
the sender writes such entries as one packed `flow_labels` message per `label_batch`
entries instead of their full verdicts, and lets them wait up to `label_delay` seconds for
company; elsewhere (an older package) it writes the full verdicts, as before. An entry is
one verdict either way: queued, confirmed and re-sent after a reconnect as one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Callable

from websockets.protocol import State

from ..metrics import Metrics

_OPEN = State.OPEN

log = logging.getLogger("msewatch.sinks.zeek_ws")


# A queued verdict: (key, its full encoded message, its conn.log label or None). The label
# is set for flow verdicts that may go to Zeek as a compact label (not in full_verdicts).
Entry = tuple[str, "str | bytes", "str | None"]


class VerdictQueue:
    """Bounded FIFO of entries (key, encoded message, conn.log label or None). Only the
    sender removes entries, and only after they were confirmed sent. `written` counts the
    entries already written on the current connection (unconfirmed); `rewind()` makes them
    due again.

    While `hold_labels` is set (a sender writes compact labels), entries with a label wait in
    a FIFO of their own: they are due only when `label_batch` of them are unwritten or
    `label_delay` seconds after the first of them came. Full verdicts do not wait for them,
    nor take them along (which would cut the batches to a label or two). Otherwise every
    entry is due at once, in order."""

    def __init__(self, maxsize: int, metrics: Metrics, label_batch: int = 1000, label_delay: float = 0.05) -> None:
        self.maxsize = maxsize
        self.metrics = metrics
        self._items: collections.deque[Entry] = collections.deque()  # without a label
        self._labels: collections.deque[Entry] = collections.deque()  # with a label
        self._items_written = 0
        self._labels_written = 0
        self.label_batch = label_batch
        self.label_delay = label_delay
        self.hold_labels = False
        self._labels_late = False  # the held labels' delay is over
        self._release: asyncio.TimerHandle | None = None
        self._unwritten = asyncio.Event()  # entries are due and not written (a state: nothing waits on it)
        # wakes the sender's run(): set when entries become due, unless `read_path_writes`
        self.wake = asyncio.Event()
        # the read path writes what it puts (VerdictSender.write_now after each read): a put
        # then does not wake the sender, which would only find the entries written (its wake-up
        # was about a third of a paced message's CPU)
        self.read_path_writes = False
        self._nonempty = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._last_drop_log = 0.0
        self._drops_since_log = 0

    def __len__(self) -> int:
        return len(self._items) + len(self._labels)

    @property
    def written(self) -> int:
        return self._items_written + self._labels_written

    def put(self, key: str, message: str | bytes, label: str | None = None) -> bool:
        """Queue one encoded verdict (with its conn.log label when it may go as one); False
        (and counted, logged) if the queue is full."""
        if len(self._items) + len(self._labels) >= self.maxsize:
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
        if label is None or not self.hold_labels:  # due now, in order
            self._items.append((key, message, label))
            due = True
        else:
            labels = self._labels
            labels.append((key, message, label))
            held = len(labels) - self._labels_written
            due = held >= self.label_batch
            if not due and held == 1 and self._release is None:
                self._release = asyncio.get_running_loop().call_later(self.label_delay, self.release_labels)
        if due:
            self._unwritten.set()
            if not self.read_path_writes:
                self.wake.set()
        self.metrics.queue_depth = len(self._items) + len(self._labels)
        if not self._nonempty.is_set():
            self._nonempty.set()
            self._empty.clear()
        return True

    def release_labels(self) -> None:
        """The held labels are due (their delay is over, or no more holding)."""
        if self._release is not None:
            self._release.cancel()  # a no-op when it is the timer calling
            self._release = None
        self._labels_late = True
        if self._labels_written < len(self._labels):
            self._unwritten.set()
            self.wake.set()  # a timer, not the read path

    def _labels_due(self) -> bool:
        held = len(self._labels) - self._labels_written
        return held > 0 and (not self.hold_labels or self._labels_late or held >= self.label_batch)

    def peek(self, n: int) -> list[Entry]:
        """Up to n entries, those without a label first, left in the queue."""
        return (list(self._items) + list(self._labels))[:n]

    def take_unwritten(self, n: int) -> tuple[list[Entry], tuple[int, int]]:
        """Up to n due entries after the written ones; they count as written. Returns them
        and what to pass to confirm() once they are known delivered."""
        items = self._items
        a = self._items_written
        b = min(a + n, len(items))
        out = [items[i] for i in range(a, b)]
        self._items_written = b
        took_labels = 0
        if len(out) < n and self._labels_due():
            labels = self._labels
            c = self._labels_written
            d = min(c + n - len(out), len(labels))
            out += [labels[i] for i in range(c, d)]
            self._labels_written = d
            took_labels = d - c
            if d == len(labels):  # every label written: the next one starts a new delay
                self._labels_late = False
                if self._release is not None:
                    self._release.cancel()
                    self._release = None
        if self._items_written == len(items) and not self._labels_due():
            self._unwritten.clear()
        return out, (b - a, took_labels)

    def rewind(self) -> None:
        """A new connection: every entry is due again (unconfirmed ones are sent twice)."""
        self._items_written = 0
        self._labels_written = 0
        if self._items or self._labels_due():
            self._unwritten.set()
            self.wake.set()

    def confirm(self, n: int, labels: int = 0) -> None:
        """Remove the first n entries without a label and the first `labels` with one (they
        were sent)."""
        for _ in range(n):
            self._items.popleft()
        for _ in range(labels):
            self._labels.popleft()
        self._items_written = max(0, self._items_written - n)
        self._labels_written = max(0, self._labels_written - labels)
        self.metrics.queue_depth = len(self._items) + len(self._labels)
        if not self._items and not self._labels:
            self._nonempty.clear()
            self._empty.set()

    async def wait_nonempty(self) -> None:
        await self._nonempty.wait()

    async def wait_empty(self) -> None:
        await self._empty.wait()


class VerdictSender:
    """Drains a VerdictQueue into one WebSocket connection (one `run` per connection).

    `labels`: whether this connection's Zeek takes compact labels (`MSEWatch::flow_labels`);
    set by the bridge when the package's hello says so, cleared for each new connection.
    `encode_labels(uids, labels)` makes the packed message."""

    def __init__(self, queue: VerdictQueue, metrics: Metrics, confirm_timeout: float = 10.0, batch: int = 1000,
                 encode_labels: Callable[[list[str], list[str]], str | bytes] | None = None):
        self.queue = queue
        self.metrics = metrics
        self.confirm_timeout = confirm_timeout
        self.batch = batch
        self.encode_labels = encode_labels
        self._labels = False
        self._ws: Any = None  # the connection run() writes to
        self._unpinged = [0, 0, 0]  # written, no ping covers them yet: entries without a label, with one, labels sent
        self._pending: collections.deque[tuple[Any, tuple[int, int], int]] = collections.deque()  # pings in flight, entries each confirms
        # seconds at least between two pings: a ping and its pong cost both sides a frame, a
        # read and a wake-up each (at 1 ms, about 8 % of the bridge's CPU at 25k messages/s)
        self.ping_interval = 0.005

    @property
    def labels(self) -> bool:
        return self._labels

    @labels.setter
    def labels(self, on: bool) -> None:
        on = bool(on) and self.encode_labels is not None
        self._labels = on
        self.queue.hold_labels = on
        if not on:
            self.queue.release_labels()

    def messages(self, entries: list[Entry]) -> tuple[list[str | bytes], int]:
        """What to write for these entries: the full verdicts, and on a connection that takes
        compact labels, the labelled entries packed into flow_labels messages of up to
        queue.label_batch entries each; and how many labels were packed."""
        if not self._labels:
            return [e[1] for e in entries], 0
        out: list[str | bytes] = []
        packed = 0
        uids: list[str] = []
        labels: list[str] = []
        encode = self.encode_labels
        step = self.queue.label_batch
        for key, message, label in entries:
            if label is None:
                out.append(message)
                continue
            uids.append(key)
            labels.append(label)
            if len(uids) >= step:
                out.append(encode(uids, labels))  # type: ignore[misc]
                packed += len(uids)
                uids, labels = [], []
        if uids:
            out.append(encode(uids, labels))  # type: ignore[misc]
            packed += len(uids)
        return out, packed

    def write_now(self, ws: Any) -> int:
        """Write every verdict queued and not yet written, now, in one write, from the
        caller (the read path, after each group of messages: a message's verdict does not
        wait for a later message's, nor for the sender task's turn). run() sends the ping that
        confirms them. Returns how many were written: 0 when nothing is due, when run() does
        not serve `ws`, or when the connection is not plainly open or its buffer is full (then
        run() writes them, with the library's flow control)."""
        queue = self.queue
        if not queue._unwritten.is_set():
            return 0
        if ws is not self._ws or ws.protocol.state is not _OPEN or ws.paused:
            queue.wake.set()  # run() writes them (or the next run() does, after its rewind)
            return 0
        entries, taken = queue.take_unwritten(self.batch)
        if not entries:
            return 0
        batch, packed = self.messages(entries)
        ws.write_texts(batch)
        self._count(taken, packed)
        if not self._pending:  # else the confirmer wakes run() when that ping's pong is in
            queue.wake.set()
        return len(entries)

    def _count(self, taken: tuple[int, int], packed: int) -> None:
        """Entries just written (`taken` from take_unwritten, `packed` of them as labels): the
        next ping confirms them."""
        u = self._unpinged
        u[0] += taken[0]
        u[1] += taken[1]
        u[2] += packed

    async def run(self, ws: Any) -> None:
        """Send on `ws` (a sources.zeek_ws.BridgeConnection, as open_session makes) until the
        connection fails (the exception propagates) or the task is cancelled. Unconfirmed
        entries stay queued and are sent again on the next connection."""
        queue = self.queue
        self._ws, self._unpinged = ws, [0, 0, 0]
        queue.rewind()
        wake = queue.wake
        self._pending = pending = collections.deque()
        loop = asyncio.get_running_loop()
        last_ping = 0.0
        sent = asyncio.Event()
        confirmer = asyncio.create_task(self._confirm(pending, sent), name="verdict-confirmer")
        confirmer.add_done_callback(lambda _: wake.set())  # run() raises what ended it
        try:
            while True:
                # entries written (here or by write_now()) are confirmed by one ping, sent when no
                # ping is in flight and not sooner than ping_interval after the last (a ping and
                # its pong cost both sides a frame each)
                while not queue._unwritten.is_set() and not ((self._unpinged[0] or self._unpinged[1]) and not pending):
                    if confirmer.done():
                        confirmer.result()  # raises what ended it
                        return
                    wake.clear()
                    await wake.wait()
                entries, taken = queue.take_unwritten(self.batch)
                if entries:
                    batch, packed = self.messages(entries)
                    async with ws.send_context():  # BridgeConnection frames the batch, written in one go
                        ws.send_texts(batch)
                    self._count(taken, packed)
                u = self._unpinged
                if not (u[0] or u[1]) or pending:
                    continue  # nothing to confirm, or the pong in flight wakes this loop (_confirm)
                if loop.time() - last_ping < self.ping_interval:
                    await asyncio.sleep(self.ping_interval - (loop.time() - last_ping))
                u, self._unpinged = self._unpinged, [0, 0, 0]  # every entry written so far, before this ping
                last_ping = loop.time()
                pending.append((await ws.ping(), (u[0], u[1]), u[2]))
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
            pong, taken, labels = pending[0]
            await asyncio.wait_for(pong, self.confirm_timeout)
            pending.popleft()
            self.queue.confirm(*taken)
            self.metrics.verdicts_sent_total += taken[0] + taken[1]
            self.metrics.labels_sent_total += labels
            if self._unpinged[0] or self._unpinged[1]:
                self.queue.wake.set()  # run() pings for what write_now() wrote meanwhile


class AnsweredCache:
    """Bounded LRU: flow uid -> what its evidence produced: the encoded message of its one
    flow verdict (with its conn.log label when that verdict may go as a compact label: get()
    returns (message, label) then); else a tuple of queue entries (key, encoded message,
    label or None).

    Kept in up to SEGMENTS dicts of maxsize // SEGMENTS uids, the newest last; a put into a
    full newest segment starts a new one and retires the oldest. One OrderedDict under
    this churn (a uid in, the oldest out, every message) rebuilt its whole table every
    ~maxsize puts: a 4 ms pause of the event loop at the default 50,000. A retired segment
    is emptied two entries per put, not at once: freeing its 6,250 messages in one go was a
    1.3-1.9 ms pause every 6,250 messages. A hit in an older segment moves the uid to the
    newest.

    A label is kept in a dict of its own beside its segment, so that the common entry is
    bytes and str, which the garbage collector never walks: a (message, label) tuple per
    flow was most of what each young-generation collection walked (about 1 ms per
    collection at 25k messages/s)."""

    SEGMENTS = 8
    FREE_PER_PUT = 2  # entries of a retired segment freed per put: done in half a segment's puts

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._nseg = max(1, min(self.SEGMENTS, maxsize))
        self._seg = max(1, maxsize // self._nseg)
        self._segments: list[dict[str, Any]] = [{}]  # oldest first; the last is filled
        self._labels: list[dict[str, str]] = [{}]  # the labels of each segment's uids that have one
        self._retired: list[tuple[dict, bool]] = []  # dropped segments (True) and their labels, being emptied
        # How many entries of the segments have a uid whose hash(uid) & mask is i (saturating at
        # 255, and then never lowered): 0 says "not here" in one byte for most new uids, which
        # otherwise took a lookup in each of 8 large dicts (about 1 us a message, most of it
        # cache misses). At most one entry per 16 counters.
        self.mask = (1 << max(10, (16 * max(1, maxsize)).bit_length())) - 1
        self.seen = bytearray(self.mask + 1)

    def __len__(self) -> int:
        return sum(len(s) for s in self._segments)

    def get(self, uid: str) -> Any:
        if not self.seen[hash(uid) & self.mask]:
            return None
        segments = self._segments
        hit = segments[-1].get(uid)
        if hit is not None:
            label = self._labels[-1].get(uid)
            return hit if label is None else (hit, label)
        for i in range(len(segments) - 2, -1, -1):
            hit = segments[i].pop(uid, None)
            if hit is not None:
                label = self._labels[i].pop(uid, None)
                self._forget(uid)
                self.put(uid, hit, label)  # the most recent now
                return hit if label is None else (hit, label)
        return None

    def _forget(self, uid: str) -> None:
        """One entry of `uid` left the segments."""
        seen, i = self.seen, hash(uid) & self.mask
        if seen[i] != 255:
            seen[i] -= 1

    def put(self, uid: str, answers: Any, label: str | None = None) -> None:
        """Remember `answers` for `uid`; `label` goes with a flow's one message (bytes)."""
        if self.maxsize <= 0 or not uid:
            return
        segments = self._segments
        newest = segments[-1]
        if uid not in newest:
            if len(newest) >= self._seg:
                newest = {}
                segments.append(newest)
                self._labels.append({})
                if len(segments) > self._nseg:
                    self._retired.append((segments.pop(0), True))
                    self._retired.append((self._labels.pop(0), False))
            seen, i = self.seen, hash(uid) & self.mask
            if seen[i] != 255:
                seen[i] += 1
            newest[uid] = answers
            if label is not None:
                self._labels[-1][uid] = label
        else:  # answered again: the new answers replace the old, label and all
            newest[uid] = answers
            labels = self._labels[-1]
            if label is not None:
                labels[uid] = label
            else:
                labels.pop(uid, None)
        retired = self._retired
        if retired:
            old, counted = retired[0]
            for _ in range(self.FREE_PER_PUT):
                if not old:
                    del retired[0]
                    break
                key, _ = old.popitem()
                if counted:  # a segment's entry, not a label
                    self._forget(key)
