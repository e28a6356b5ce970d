"""Fuzz targets: one function per input surface, bytes in, an AssertionError out when the
standard is broken. Hypothesis (tests/fuzz/test_fuzz_smoke.py, `python -m tests.fuzz`) and,
where installed, atheris (`python -m tests.fuzz --engine atheris`) drive the same functions.

The standard each target holds (issue 11):
- pcap:     `msewatch analyze` exits 0 or 2, never with a traceback; an error that names a
            byte offset names the exact one: the verdicts written before the error are exactly
            the verdicts of the capture cut at that offset (so every verdict decided before the
            error was flushed, and the offset is the bad record's first byte).
- evidence: a Zeek WebSocket message through the bridge's reader: malformed ones are
            WireError (bounded message naming the path) and counted, never another exception;
            decoded evidence never makes the engine fail; the fast and the generic decoder agree.
- annotate: every EVE line comes out exactly once, either untouched or with the annotation
            appended after its original bytes (and with --format ecs as one ECS document);
            verdicts of any shape never raise.
- config:   any file is a Config or one ConfigError naming the file, never anything else.

Seeds are real: prefixes of the corpus captures (tests/data/corpus, real clients), the same
packets as pcapng, and the evidence the engine extracts from them, encoded as Zeek sends it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import struct
import tempfile
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "corpus"
SEED_CAPTURES = ("mse_rc4_libtorrent_transmission.pcap", "dht_local.pcap", "utp_rc4_libtorrent_libtorrent.pcap",
                 "tracker_udp.pcap", "tls13_bulk.pcap", "dns.pcap", "shadowsocks_small.pcap", "lsd_local.pcap")
SEED_RECORDS = 48  # records kept of each capture: small seeds keep each run in milliseconds
_OFFSET = re.compile(r"byte offset (\d+)")


# --------------------------------------------------------------------------------- seeds
def _pcap_records(data: bytes) -> tuple[bytes, list[bytes]]:
    """(global header, records) of a classic little- or big-endian pcap."""
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    recs, pos = [], 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from(endian + "I", data, pos + 8)[0]
        recs.append(data[pos:pos + 16 + caplen])
        pos += 16 + caplen
    return data[:24], recs


def _as_pcapng(header: bytes, recs: list[bytes]) -> bytes:
    """The same packets as pcapng (SHB, one IDB, EPBs): the other file format the reader frames."""
    linktype = struct.unpack_from("<I", header, 20)[0]

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack("<HHI", linktype, 0, 262144))]
    for r in recs:
        sec, usec, caplen, origlen = struct.unpack_from("<IIII", r)
        ts = sec * 1_000_000 + usec
        out.append(block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, caplen, origlen) + r[16:]))
    return b"".join(out)


@functools.cache
def pcap_seeds() -> tuple[bytes, ...]:
    seeds = []
    for name in SEED_CAPTURES:
        path = CORPUS / name
        if not path.exists():
            continue
        header, recs = _pcap_records(path.read_bytes())
        recs = recs[:SEED_RECORDS]
        seeds.append(header + b"".join(recs))
        if header[:4] == b"\xd4\xc3\xb2\xa1":  # little-endian microsecond pcap: convert
            seeds.append(_as_pcapng(header, recs))
    if not seeds:
        raise RuntimeError(f"no seed captures in {CORPUS}")
    return tuple(seeds)


@functools.cache
def evidence_seeds() -> tuple[bytes, ...]:
    """Evidence messages exactly as Zeek's WebSocket API delivers them, from real captures."""
    from msewatch.engine import extract_evidence
    from msewatch.wire import events, v1

    msgs = []
    for name in SEED_CAPTURES[:6]:
        path = CORPUS / name
        if path.exists():
            for ev in extract_evidence([str(path)])[:4]:
                msgs.append(v1.encode_event_message("zeek/msewatch/evidence", events.evidence_to_event(ev)).encode())
    return tuple(msgs)


# --------------------------------------------------------------------------------- pcap
def _analyze(cap: Path, out: Path) -> tuple[int, str]:
    from msewatch.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["analyze", str(cap), "-o", str(out), "--no-progress"])
    return rc, err.getvalue()


def _packets(path: Path) -> tuple[list, str | None]:
    """Every packet the reader yields, and the error it ends with (None: clean)."""
    from msewatch.sources.pcap import PcapError, ReadStats, iter_packets

    out: list = []
    try:
        for pkt in iter_packets(str(path), ReadStats()):
            out.append(pkt)
    except PcapError as e:
        return out, str(e)
    return out, None


def check_pcap(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="msewatch-fuzz-") as tmp:
        cap, out = Path(tmp) / "fuzz.cap", Path(tmp) / "v.jsonl"
        cap.write_bytes(data)
        rc, err = _analyze(cap, out)
        assert rc in (0, 2), f"exit code {rc}: {err}"
        written = out.read_bytes()
        if rc == 0:
            return
        errors = [line for line in err.splitlines() if line.startswith("msewatch: error: ")]
        assert len(errors) == 1, err
        m = _OFFSET.search(errors[0])
        if m is None:  # the file as a whole is unreadable (magic, empty): nothing was decided
            assert written == b"", errors[0]
            return
        at = int(m[1])
        assert 0 <= at <= len(data), errors[0]
        if at == 0:
            assert written == b"", errors[0]
            return
        cut = Path(tmp) / "cut.cap"
        cut.write_bytes(data[:at])
        # exact offset: the packets before the error are all the packets of the cut capture
        before, error = _packets(cap)
        assert error is not None and f"byte offset {at}" in error, (error, errors[0])
        after, cut_error = _packets(cut)
        assert after == before and (cut_error is None or not after), (
            f"the error names byte {at}, but the capture cut there reads differently: {cut_error}")
        rc2, err2 = _analyze(cut, Path(tmp) / "cut.jsonl")
        cut_written = (Path(tmp) / "cut.jsonl").read_bytes()
        if rc2 == 2 and written == b"":  # e.g. a file header cut short: no packet either way
            return
        assert rc2 == 0, f"the capture cut at the reported offset {at} is not clean: {err2}"
        assert written == cut_written, f"verdicts before the error at byte {at} differ from the cut capture's"


# --------------------------------------------------------------------------------- evidence
class _Checked:
    """The bridge's reader and engine, with every engine failure counted for the oracle."""

    def __init__(self) -> None:
        from msewatch.bridge import Bridge
        from msewatch.config import Config
        from msewatch.config_zeek import ZeekConfig
        from msewatch.engine import Engine
        from msewatch.metrics import Metrics

        self.metrics = Metrics()
        self.bridge = Bridge(ZeekConfig(), Engine(Config()), self.metrics)


@functools.cache
def _bridge() -> _Checked:
    return _Checked()


def check_evidence(data: bytes) -> None:
    import logging

    from msewatch.evidence import FlowEvidence
    from msewatch.wire import events, v1

    # the differential oracle: the fast decoder and the generic one agree
    fast = generic = None
    fast_err = generic_err = None
    try:
        obj = v1.loads(data)
    except v1.WireError as e:
        obj, fast_err = None, e
    if obj is not None:
        fast = events.fast_evidence(obj)
        try:
            msg = v1.DEFAULT.decode_message(data)
            if isinstance(msg, v1.DataMessage):
                event = v1.event_from_value(msg.value)
                if event.name == events.FLOW_EVIDENCE:
                    generic = events.evidence_from_event(event)
        except v1.WireError as e:
            generic_err = e
        if fast is not None:
            assert generic == fast, f"fast decoder accepted what the generic one makes {generic!r} / {generic_err}"
    compiled = events._compiled_codec(v1.DEFAULT)  # the compiled decoder (msewatch/_wire.c), when built
    if compiled is not None:
        c_ev = compiled[0].decode(data)
        if c_ev is not None:
            assert c_ev == generic, f"compiled decoder accepted what the generic one makes {generic!r} / {generic_err}"
    for e in (fast_err, generic_err):
        if e is not None:
            assert len(str(e)) < 2000 and str(e).split(":")[0], f"unbounded or unlocated error: {str(e)[:200]}"
    # the bridge path: decode errors are counted, the engine never fails
    c = _bridge()
    before = c.bridge.engine_errors
    logging.disable(logging.CRITICAL)  # the reader logs malformed messages: not the point here
    try:
        c.bridge.reader.handle(data)
    finally:
        logging.disable(logging.NOTSET)
    assert c.bridge.engine_errors == before, "the engine failed on decoded evidence"
    if isinstance(fast or generic, FlowEvidence):
        assert c.metrics.evidence_received_total > 0


# --------------------------------------------------------------------------------- annotate
class _Writes:
    """An output recording each write: the annotator writes every line in one call."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, b: bytes) -> int:
        self.writes.append(bytes(b))
        return len(b)


def check_annotate(lines: list[bytes], verdicts: list) -> None:
    from msewatch.sinks.eve_annotate import _NEEDLE, VerdictLookup, annotate

    lookup = VerdictLookup(verdicts)
    out = _Writes()
    st = annotate(lines, lookup, out)
    assert st.lines_in == st.lines_out == len(out.writes) == len(lines)
    for raw, w in zip(lines, out.writes):
        if w == raw:
            continue
        end = len(raw.rstrip(b" \t\r\n"))
        body, trail = raw[:end - 1], raw[end:]
        assert raw[end - 1:end] == b"}" and w.startswith(body) and w.endswith(b"}" + trail), (raw[:80], w[:80])
        middle = w[len(body):len(w) - len(trail)]
        assert middle.startswith(b"," + _NEEDLE) or middle.startswith(_NEEDLE), middle[:80]
        before, after = orjson.loads(raw), orjson.loads(w)
        assert list(after)[-1] == "msewatch" and {k: v for k, v in after.items() if k != "msewatch"} == before
    # --format ecs: one ECS document per line, whatever the line held
    from msewatch.ecs import eve_line, msewatch_flow

    ecs = _Writes()
    st = annotate(lines, VerdictLookup(verdicts, payload=msewatch_flow), ecs, render=eve_line)
    assert st.lines_out == len(ecs.writes) == len(lines)
    for w in ecs.writes:
        assert w.endswith(b"\n") and w.count(b"\n") == 1 and isinstance(orjson.loads(w), dict), w[:120]


# --------------------------------------------------------------------------------- config
def check_config(data: bytes) -> None:
    from msewatch.config import ConfigError, load_config

    with tempfile.TemporaryDirectory(prefix="msewatch-fuzz-") as tmp:
        p = Path(tmp) / "c.yaml"
        p.write_bytes(data)
        try:
            load_config(p)
        except ConfigError as e:
            assert str(e).startswith(str(p)) and len(str(e)) < 8000, str(e)[:200]
