"""The compiled offline packet path: msewatch._fastpath (C) driven for `run_pcaps`.

The C extension reads pcap/pcapng records, decodes the frames and runs the per-flow state
machine of `Engine.process_packet` (flow table, LRU eviction, idle sweeps, budgets, heads,
bursts). Python runs once per *flow*, not per packet: when the C table emits a flow it
calls back here, we build the engine's own `_Flow` from the C state and call
`Engine._emit`, so the evidence snapshot, the uid (drawn from the engine's seeded RNG in
emission order), deciding and the host model are the Python engine's, in the same order.

The pure-Python path (sources/pcap.py + Engine.process_packet) is the reference and the
fallback: it runs when the extension is not built (no C compiler at install time), when
MSEWATCH_PURE_PYTHON is set, or when the engine subclass changes the packet path.
tests/fastpath/ runs both on every corpus capture and on damaged captures and compares
evidence, verdicts, read counters and errors.

After a run (also after an error) the C table hands its open flows back to the engine as
`_Flow` objects, so `engine.flush()` and everything else sees the state the Python path
would have left.
"""

from __future__ import annotations

import zlib
import os
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

try:  # built by setup.py when a C compiler is present; optional
    from . import _fastpath as _c
except ImportError as e:  # pragma: no cover - depends on the install
    _c = None
    _IMPORT_ERROR: str | None = str(e)
else:
    _IMPORT_ERROR = None

if TYPE_CHECKING:
    from .engine import Engine
    from .verdict import FlowVerdict, HostVerdict

__all__ = ["available", "status", "usable", "usable_at_all", "run_pcaps", "make_table", "hand_back", "BATCH", "PAUSE"]

BATCH = 1 << 16  # packets per C call: bounds the time between signal checks and progress updates
PAUSE = 256  # pending verdicts at which the C loop returns so they are yielded (bounded memory)

_stale_warned = False


def _source_hash() -> str | None:
    src = Path(__file__).with_name("_fastpath.c")
    try:
        return f"{zlib.crc32(src.read_bytes()):08x}"
    except OSError:
        return None  # an installed wheel ships no source: nothing to compare


def _stale() -> bool:
    """A development checkout whose _fastpath.c changed after the extension was built."""
    if _c is None:
        return False
    built = getattr(_c, "SOURCE_HASH", None)
    src = _source_hash()
    return src is not None and built is not None and built != src


def available() -> bool:
    """Is the compiled path importable and built from the current source?"""
    global _stale_warned
    if _c is None:
        return False
    if _stale():
        if not _stale_warned:
            _stale_warned = True
            print("msewatch: the compiled packet path is older than bridge/msewatch/_fastpath.c"
                  " (run `make setup`); using the pure-Python path", file=sys.stderr)
        return False
    return _constants_agree()


def status() -> str:
    """One line for `make setup` and the benchmarks: which packet path `analyze` uses."""
    if os.environ.get("MSEWATCH_PURE_PYTHON"):
        return "msewatch: packet path: pure Python (MSEWATCH_PURE_PYTHON is set)"
    if _c is None:
        return ("msewatch: packet path: pure Python - the C extension is not built"
                f" ({_IMPORT_ERROR}); install gcc and python3-dev, then `make setup` (tools/setup-system.sh"
                " does it as root)")
    if _stale():
        return "msewatch: packet path: pure Python - the C extension is older than its source; run `make setup`"
    if not _constants_agree():
        return "msewatch: packet path: pure Python - the C extension does not match engine.py/sources/pcap.py"
    return f"msewatch: packet path: compiled ({Path(_c.__file__).name})"


def _constants_agree() -> bool:
    from . import engine as _e
    from .sources import pcap as _p

    return (
        (_e._S_SYN, _e._S_SYNACK, _e._S_OFIN, _e._S_RFIN, _e._S_RST, _e._S_DONE)
        == (_c.S_SYN, _c.S_SYNACK, _c.S_OFIN, _c.S_RFIN, _c.S_RST, _c.S_DONE)
        and (_p._ETHERNET, _p._SLL, _p._SLL2, _p._RAW_IP, _p._NULL)
        == (_c.KIND_ETHERNET, _c.KIND_SLL, _c.KIND_SLL2, _c.KIND_RAW_IP, _c.KIND_NULL)
    )


# the methods of the packet path the C table replaces: a subclass that overrides one of them
# gets the Python path (Engine._emit, process_evidence and on_evidence stay Python and may be
# overridden)
_PACKET_PATH = ("process_packet", "_new_flow", "_retire", "_finish", "_sweep", "snapshot")


def usable_at_all() -> bool:
    """Is the compiled path built, current and not switched off?"""
    return not os.environ.get("MSEWATCH_PURE_PYTHON") and available()


def usable(engine: "Engine") -> bool:
    """Can `run_pcaps` feed this engine from C?"""
    from .engine import Engine

    if not usable_at_all():
        return False
    cls = type(engine)
    if any(getattr(cls, m) is not getattr(Engine, m) for m in _PACKET_PATH):
        return False
    return not engine.flows  # the C table starts empty; an engine with open flows stays in Python


# ---------------------------------------------------------------------------- the flow table

class _UidSink:
    __slots__ = ("uid",)


def make_table(engine: "Engine", own: Callable | None = None, **extra):
    """A C FlowTable with the engine's budgets and limits that emits into the engine.

    own(seq, f), when given, is called instead of Engine._emit with the global emission number
    (--jobs); extra keyword arguments go to the FlowTable (record/owners/shard_k/local_nets)."""
    from .engine import _Flow

    Flow = _Flow
    eng_emit = engine._emit
    new_uid = engine._new_uid
    sink = _UidSink()

    def emit(seq, skipped, now, proto, oh, op, rh, rp, ts, last, sizes, times, nb, oheads, rheads,
             opkts, rpkts, obytes, rbytes, st):
        for _ in range(skipped):  # other shards' flows took uids here: keep the RNG in step
            new_uid(sink)
        f = Flow(proto, oh, op, rh, rp, ts)
        f.last = last
        f.sizes = sizes
        f.times = times
        f.nb = nb
        f.oheads = oheads
        f.rheads = rheads
        f.opkts = opkts
        f.rpkts = rpkts
        f.obytes = obytes
        f.rbytes = rbytes
        f.st = st
        if now is not None:
            engine.now = now
        if own is None:
            eng_emit(f, True)
        else:
            own(seq, f)
        return len(engine.pending) >= PAUSE

    def sweep(now, ts):
        if now is not None:
            engine.now = now
        engine._expire_peer_cache(ts)

    return _c.FlowTable(
        size_from_headers=_sizes_from_headers(),
        max_packets=engine._max_packets,
        max_bursts=engine._max_bursts,
        head_bytes=engine._head,
        udp_heads=engine._udp_heads,
        max_age=engine._max_age,
        max_flows=engine._max_flows,
        tcp_timeout=engine._timeouts[6],
        udp_timeout=engine._timeouts[17],
        sweep_every=engine._sweep_every,
        next_sweep=engine._next_sweep,
        emit=emit,
        sweep=sweep,
        **extra,
    )


def _sizes_from_headers() -> bool:
    """Does Engine.process_packet count the payload length the headers announce (its `length`
    argument, issue 10) rather than the captured bytes? The C table follows it."""
    from .engine import Engine

    code = Engine.process_packet.__code__
    return "length" in code.co_varnames[: code.co_argcount]


def sync_counters(table, engine: "Engine") -> None:
    packets, flows, evicted, expired = table.take_counters()
    st = engine.stats
    st.packets += packets
    st.flows += flows
    st.flows_evicted += evicted
    st.flows_expired += expired
    now = table.sync_now()
    if now is not None:
        engine.now = now


def hand_back(table, engine: "Engine") -> None:
    """Move the C table's flows (least recently active first) into engine.flows as _Flow
    objects, with the sweep clock and counters: the engine is then exactly as the Python path
    would have left it."""
    from .engine import _Flow

    flows = engine.flows
    for (proto, oh, op, rh, rp, ts, last, sizes, times, nb, oheads, rheads,
         opkts, rpkts, obytes, rbytes, st) in table.export():
        f = _Flow(proto, oh, op, rh, rp, ts)
        f.last = last
        f.sizes = sizes
        f.times = times
        f.nb = nb
        f.oheads = oheads
        f.rheads = rheads
        f.opkts = opkts
        f.rpkts = rpkts
        f.obytes = obytes
        f.rbytes = rbytes
        f.st = st
        key = (proto, oh, op, rh, rp) if oh < rh or (oh == rh and op <= rp) else (proto, rh, rp, oh, op)
        flows[key] = f
    engine._next_sweep = table.next_sweep
    sync_counters(table, engine)


# ---------------------------------------------------------------------------- the reader

def open_reader(f, name: str):
    """A C Reader on the open capture `f` (unbuffered): the file header is read and checked
    here exactly as sources.pcap.iter_packets does (same errors)."""
    from .sources import pcap as _p

    PcapError = _p.PcapError
    head = _p._read(f, 4, name)
    magic = int.from_bytes(head, "big")
    if len(head) == 4 and magic in _p._PCAP_MAGICS:
        order, divisor, rec_len = _p._PCAP_MAGICS[magic]
        head += _p._read(f, 20, name)
        if len(head) < 24:
            raise PcapError(f"{name}: truncated pcap file header at byte offset 0 ({len(head)} of 24 bytes)")
        snaplen, linktype = struct.unpack_from(order + "II", head, 16)
        kind = _p._link_kind(name, linktype & 0xFFFF)
        max_caplen = min(max(snaplen, _p._DEFAULT_MAX_CAPLEN), _p._HARD_MAX_CAPLEN)
        return _c.Reader(f.fileno(), name, PcapError, head, 0, big=order == ">", divisor=divisor,
                         rec_len=rec_len, kind=kind, max_caplen=max_caplen)
    if len(head) == 4 and magic == _p._PCAPNG_SHB:
        def idb(block: bytes, little: int, offset: int):
            i = _p._parse_idb(block, bool(little), name, offset)
            return (i.linktype, -1 if i.kind is None else i.kind, i.divisor, i.ts_offset, i.snaplen)

        def link_error(linktype: int, iface_id: int):
            _p._link_kind(name, linktype, f" on pcapng interface {iface_id}")

        def exotic_ts(tick: int, divisor: int, ts_offset: int) -> float:
            sec, frac = divmod(tick, divisor)
            return ts_offset + sec + frac / divisor

        return _c.Reader(f.fileno(), name, PcapError, head, 1, idb=idb, link_error=link_error,
                         exotic_ts=exotic_ts)
    if not head:
        raise PcapError(f"{name}: not a pcap or pcapng file (empty file)")
    raise PcapError(f"{name}: not a pcap or pcapng file (magic 0x{head.hex()})")


def open_capture(path) -> tuple:
    """(file, name) opened as sources.pcap.iter_packets opens it (same error)."""
    from .sources.pcap import PcapError

    name = os.fspath(path)
    try:
        f = open(name, "rb", buffering=0)
    except OSError as e:
        raise PcapError(f"{name}: cannot open: {e.strerror or e}") from e
    return f, name


def _sync_read_stats(reader, stats) -> None:
    (stats.packets, stats.decoded, stats.skipped_bad_header, stats.skipped_non_ip,
     stats.skipped_other_proto, stats.fragments, stats.bytes_read) = reader.stats()


def iter_packets(path, stats) -> Iterator[tuple]:
    """sources.pcap.iter_packets through the C reader (for the parity tests): the same tuples
    plus a 9th field, the payload length the headers announce."""
    f, name = open_capture(path)
    with f:
        reader = open_reader(f, name)
        try:
            while True:
                batch = reader.read(4096)
                _sync_read_stats(reader, stats)
                if not batch:
                    return
                yield from batch
        finally:
            _sync_read_stats(reader, stats)


def feed_file(path: str, table, engine: "Engine", stats, progress=None) -> Iterator:
    """Run one capture through the C table, yielding the engine's verdicts as they come."""
    f, name = open_capture(path)
    with f:
        reader = open_reader(f, name)
        while True:
            try:
                more = reader.run(table, BATCH)
            finally:
                _sync_read_stats(reader, stats)
            if engine.pending:
                yield from engine.drain()
            if progress is not None:
                progress(path, stats)
            if not more:
                return


def run_pcaps(paths: Iterable[str], engine: "Engine", progress=None,
              read_stats: list | None = None) -> Iterator["FlowVerdict | HostVerdict"]:
    """engine.run_pcaps on the compiled path: the same verdicts in the same order.

    A PcapError propagates after every verdict decided so far has been yielded, with the open
    flows handed back to the engine, so the caller's `engine.flush()` decides them."""
    from .sources.pcap import ReadStats

    table = make_table(engine)
    try:
        for path in paths:
            stats = ReadStats()
            if read_stats is not None:
                read_stats.append((str(path), stats))
            yield from feed_file(str(path), table, engine, stats, progress)
    except GeneratorExit:
        hand_back(table, engine)
        raise
    except BaseException:
        hand_back(table, engine)
        pending = engine.drain()
        if pending:
            # decided before the error: deliver them first, then the error (as the Python path)
            err = sys.exc_info()[1]
            yield from pending
            raise err
        raise
    hand_back(table, engine)
    yield from engine.flush()
