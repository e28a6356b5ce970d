"""`msewatch analyze --jobs N`: deciding flows in N processes.

Once packets are handled in C (msewatch.fastpath), deciding (detectors, flow score, host model)
is where the offline path spends its time, and that is what the workers share out.

1. Plan (in this process): the compiled flow table runs over the captures once without
   deciding anything and records, for every flow in emission order, its scoring host (the
   local endpoint, as Engine.process_evidence picks it) and its other endpoint when that is
   local too. Hosts that share a flow are joined (union-find), so every host's flows and every
   host whose state a decision touches end up in one group; the groups are dealt to N shards,
   largest first, each to the shard with the fewest flows so far.
2. Run: each of the N workers (forked after the imports) reads every capture with the compiled
   reader and runs the whole flow table - so flow lifetimes, LRU eviction, idle timeouts and
   the uids drawn from the seeded RNG are exactly those of one process - but decides only the
   flows of its shard, and so holds the complete host state of its hosts.
3. Merge: the parent puts the workers' verdicts back into the single-process order (the global
   emission number of each flow, then the final host verdicts sorted by host).

The one piece of context not shared between workers is the peer cache: a P2P peer endpoint
learned from a flow of one host group is not known to a flow of another group decided in a
different worker. Verdicts are therefore identical to `--jobs 1` except where the peer cache
would carry a peer across host groups; benchmarks/bench_throughput.py --jobs-diff counts the
differences on a capture, and docs/performance.md records them for the corpus. When one group
holds most flows (every host talks to one local server), the plan says so on stderr: the
run stays correct but cannot spread.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import socket
import sys
import threading
import traceback
from collections import deque
from dataclasses import astuple, dataclass
from typing import Callable, Iterator, Sequence

from .config import Config

BATCH_ITEMS = 256  # verdicts per message from a worker


class _Decided:
    """A verdict decided in a worker, as the dict `to_dict()` gave there."""

    __slots__ = ("d",)

    def __init__(self, d: dict) -> None:
        self.d = d

    def to_dict(self) -> dict:
        return self.d


def _host_str(a: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(a) == 4 else socket.AF_INET6, a)


# ---------------------------------------------------------------------------- plan

@dataclass
class Plan:
    owners: bytes  # the shard of every emitted flow, in emission order
    host_shard: dict[str, int]  # the shard that reports each scored host
    flows_per_shard: list[int]
    groups: int
    largest_group: int


def plan(cfg: Config, paths: Sequence[str], jobs: int) -> Plan:
    """Who decides which flow: see the module docstring. A capture that cannot be read to the
    end is planned up to the error and through the flush after it, as the workers will run."""
    from . import fastpath
    from .engine import Engine
    from .sources.pcap import PcapError, ReadStats

    eng = Engine(cfg)
    records: list[tuple[bytes, bytes | None]] = []
    nets = [(n.network_address.packed, n.prefixlen) for n in eng._local_nets]
    table = fastpath.make_table(eng, record=records, local_nets=nets)
    try:
        for path in paths:
            f, name = fastpath.open_capture(path)
            with f:
                reader = fastpath.open_reader(f, name)
                while reader.run(table, 1 << 40):
                    pass
    except PcapError:
        pass  # the workers meet the same error at the same record
    table.flush()
    del ReadStats

    parent: dict[bytes, bytes] = {}

    def find(a: bytes) -> bytes:
        root = a
        while parent.get(root, root) != root:
            root = parent[root]
        while a != root:  # path compression
            parent[a], a = root, parent.get(a, a)
        return root

    for host, other in records:
        if other is not None:
            ra, rb = find(host), find(other)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    size: dict[bytes, int] = {}
    roots = [find(host) for host, _ in records]
    for r in roots:
        size[r] = size.get(r, 0) + 1
    load = [0] * jobs
    shard_of_group: dict[bytes, int] = {}
    for r, n in sorted(size.items(), key=lambda x: (-x[1], x[0])):  # deterministic
        k = min(range(jobs), key=lambda i: (load[i], i))
        shard_of_group[r] = k
        load[k] += n
    owners = bytes(shard_of_group[r] for r in roots)
    host_shard: dict[str, int] = {}
    for host, other in records:
        for a in (host, other):
            if a is not None and a not in host_shard:
                host_shard[a] = shard_of_group[find(a)]
    return Plan(owners, {_host_str(a): k for a, k in host_shard.items()}, load, len(size),
                max(size.values(), default=0))


# ---------------------------------------------------------------------------- workers

def _worker(k: int, cfg: Config, paths: Sequence[str], owners: bytes, host_shard: dict[str, int],
            conn, report_progress: bool) -> None:
    from . import fastpath
    from .engine import Engine
    from .sources.pcap import PcapError, ReadStats
    from .verdict import HostVerdict

    out: list = []

    def send(force: bool = False) -> None:
        if out and (force or len(out) >= BATCH_ITEMS):
            conn.send_bytes(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
            out.clear()

    eng = Engine(cfg)

    def own(seq: int, f) -> None:
        mark = len(eng.pending)
        eng._emit(f, True)
        new = eng.pending[mark:]
        del eng.pending[mark:]
        for i, v in enumerate(new):
            if isinstance(v, HostVerdict) and host_shard.get(v.host, 0) != k:
                continue  # cannot happen with a sound plan; that host's shard reports it
            out.append(("v", (0, seq, i), v.to_dict()))
        send()

    try:
        table = fastpath.make_table(eng, own=own, owners=owners, shard_k=k)
        try:
            for path in paths:
                stats = ReadStats()
                try:
                    f, name = fastpath.open_capture(path)
                    with f:
                        reader = fastpath.open_reader(f, name)
                        while True:
                            try:
                                more = reader.run(table, fastpath.BATCH)
                            finally:
                                fastpath._sync_read_stats(reader, stats)
                            if report_progress:
                                out.append(("progress", path, stats.bytes_read))
                                send(force=True)
                            if not more:
                                break
                finally:
                    out.append(("stats", path, astuple(stats)))
        except PcapError as e:
            out.append(("error", type(e).__name__, str(e)))
            send(force=True)
        # the end of the input, or the flush the CLI does after an error: decide the open flows
        table.flush()
        for hv in eng.flush():
            if host_shard.get(hv.host, 0) == k:
                out.append(("v", (1, hv.host), hv.to_dict()))
        t = os.times()
        out.append(("end", t.user + t.system))
        send(force=True)
    except BrokenPipeError:
        pass
    except BaseException:
        try:
            conn.send_bytes(pickle.dumps([("crash", traceback.format_exc())]))
        except OSError:
            pass
    finally:
        conn.close()


class _Stream:
    """One worker's messages, in order. A thread drains the pipe as fast as the worker writes,
    so no worker waits for the parent's merge to need its next verdict."""

    _EOF = object()

    def __init__(self, k: int, conn) -> None:
        self.k = k
        self.conn = conn
        self.buf: deque = deque()
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._drain, name=f"msewatch-jobs-{k}", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        try:
            while True:
                self.q.put(pickle.loads(self.conn.recv_bytes()))
        except (EOFError, OSError):
            self.q.put(self._EOF)

    def next(self):
        while not self.buf:
            msgs = self.q.get()
            if msgs is self._EOF:
                self.q.put(self._EOF)
                raise RuntimeError(f"analyze --jobs: worker {self.k} ended without finishing")
            self.buf.extend(msgs)
        return self.buf.popleft()


class ShardedRun:
    """The analyze run over N worker processes; `run()` yields verdicts like run_pcaps, and
    after a PcapError `flush()` returns what the workers decided on the flows still open."""

    def __init__(self, cfg: Config, jobs: int, paths: Sequence[str]) -> None:
        self.cfg = cfg
        self.jobs = jobs
        self.paths = [str(p) for p in paths]
        self.plan: Plan | None = None
        self._streams: list[_Stream] = []
        self._procs: list = []
        self._error: tuple[str, str] | None = None
        self.worker_cpu = [0.0] * jobs  # CPU seconds of each worker (benchmarks)
        self.plan_cpu = 0.0

    def _start(self) -> None:
        c0 = os.times()
        self.plan = p = plan(self.cfg, self.paths, self.jobs)
        c1 = os.times()
        self.plan_cpu = c1.user + c1.system - c0.user - c0.system
        total = sum(p.flows_per_shard)
        if total >= 1000 and p.largest_group > 0.75 * total:
            print(f"msewatch: --jobs {self.jobs}: {p.largest_group:,} of {total:,} flows are in one group of hosts"
                  " that share flows; they are decided in one process", file=sys.stderr)
        try:
            ctx = multiprocessing.get_context("fork")  # the workers inherit the imports
        except ValueError:  # pragma: no cover - platforms without fork
            ctx = multiprocessing.get_context()
        for k in range(self.jobs):
            r, w = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker, args=(k, self.cfg, self.paths, p.owners, p.host_shard, w, k == 0),
                               name=f"msewatch-analyze-{k}", daemon=True)
            proc.start()
            w.close()
            self._streams.append(_Stream(k, r))
            self._procs.append(proc)

    def _phase(self, progress: Callable | None, read_stats: list | None) -> Iterator[_Decided]:
        """Merge the workers' verdicts up to each one's next error or end marker."""
        import heapq

        from .sources.pcap import ReadStats

        stats: dict[str, ReadStats] = {}

        def items(s: _Stream):
            while True:
                m = s.next()
                kind = m[0]
                if kind == "v":
                    yield m[1], m[2]
                elif kind in ("progress", "stats") and s.k == 0:
                    path = m[1]
                    st = stats.get(path)
                    if st is None:
                        st = stats[path] = ReadStats()
                        if read_stats is not None:
                            read_stats.append((path, st))
                    if kind == "progress":
                        st.bytes_read = m[2]
                        if progress is not None:
                            progress(path, st)
                    else:
                        for name, value in zip(ReadStats.__dataclass_fields__, m[2]):
                            setattr(st, name, value)
                elif kind == "error":
                    if s.k == 0:
                        self._error = (m[1], m[2])
                    return
                elif kind == "end":
                    self.worker_cpu[s.k] = m[1]
                    return
                elif kind == "crash":
                    raise RuntimeError(f"analyze --jobs: worker {s.k} failed:\n{m[1]}")

        for _key, d in heapq.merge(*(items(s) for s in self._streams), key=lambda x: x[0]):
            yield _Decided(d)

    def run(self, progress: Callable | None = None, read_stats: list | None = None) -> Iterator[_Decided]:
        from .sources.pcap import PcapError, UnsupportedLinkType

        try:
            self._start()
            yield from self._phase(progress, read_stats)
        except BaseException:
            self.close()
            raise
        if self._error is not None:
            cls = UnsupportedLinkType if self._error[0] == "UnsupportedLinkType" else PcapError
            raise cls(self._error[1])
        self.close()

    def flush(self) -> list[_Decided]:
        """After a PcapError from run(): the verdicts on the flows still open, and the hosts."""
        if not self._streams:
            return []
        try:
            return list(self._phase(None, None))
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers (they have ended unless the run was cut short) and their readers."""
        for p in self._procs:
            p.join(timeout=0 if p.exitcode is not None else 5)
            if p.is_alive():
                p.terminate()
                p.join()
        for s in self._streams:
            s.thread.join(timeout=5)  # the pipe is at its end once the worker is gone
            s.conn.close()
        self._streams, self._procs = [], []


def effective_jobs(jobs: int) -> tuple[int, str | None]:
    """The number of workers to run and, when it differs from the request, why."""
    from . import fastpath

    if jobs == 0:
        jobs = os.cpu_count() or 1
    jobs = min(jobs, 256)
    if jobs > 1 and not fastpath.usable_at_all():
        return 1, "--jobs needs the compiled packet path (" + fastpath.status().split(": ", 2)[-1] + "); using 1 job"
    return jobs, None


__all__ = ["Plan", "ShardedRun", "effective_jobs", "plan"]
