"""Flow evidence from Zeek over the WebSocket API (v1 JSON, /v1/messages/json).

Connecting: open the WebSocket with an `X-Application-Name` header (Zeek logs it in
cluster.log), send the subscription (a JSON array of topic prefixes), wait for the ack
`{"type":"ack","endpoint":..,"version":..}`. Then every text message is a data-message or
an error; `EvidenceReader` turns MSEWatch::flow_evidence events into FlowEvidence.

The connection is websockets' own asyncio connection (handshake, TLS, keepalive pings,
closing handshake, flow control), with one change in `BridgeConnection`: a data message is
handed to a callback right where the library's sans-I/O protocol yields its frame, in the
`data_received` call that read it, instead of going through a queue, a future and an `await
recv()` per message. All the messages of one read are handled in one go, and the verdicts
they queue go out in one write (sinks/zeek_ws.py). Per message that saves most of the
library's per-message coroutine overhead (docs/performance.md, "The bridge").
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import time
from bisect import bisect_left
from typing import Any, Callable
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK
from websockets.frames import Opcode

from ..config_zeek import TLSConfig, ZeekConfig
from ..evidence import FlowEvidence
from ..metrics import LATENCY_BUCKETS, Metrics
from ..wire import events as wire_events
from ..wire.v1 import Ack, Codec, ErrorMessage, Event, WireError, encode_subscription

log = logging.getLogger("msewatch.sources.zeek_ws")

_CONNECT_PARAMS = inspect.signature(connect).parameters


def ssl_context(url: str, tls: TLSConfig) -> ssl.SSLContext | None:
    """None for ws://; for wss:// a client context honouring ca_file / verify / cert."""
    if urlsplit(url).scheme != "wss":
        return None
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx


def connect_kwargs(url: str, cfg: ZeekConfig) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "additional_headers": {"X-Application-Name": cfg.application_name},
        "open_timeout": cfg.ack_timeout,
        "ping_interval": 20,
        "ping_timeout": 20,
        "close_timeout": 5,
        "compression": None,  # small JSON messages on a local link: not worth the CPU
        "max_size": 16 * 1024 * 1024,
        "max_queue": 64,
    }
    if "proxy" in _CONNECT_PARAMS:  # websockets >= 15 would otherwise honour *_proxy env vars
        kw["proxy"] = None
    ctx = ssl_context(url, cfg.tls)
    if ctx is not None:
        kw["ssl"] = ctx
    return kw


_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT


class BridgeConnection(ClientConnection):
    """websockets' client connection, with data messages handed to `on_message(bytes)` as
    the protocol parses them (fragments joined) instead of queued for `recv()`, and the
    frames of one flush written to the socket in one call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_message: Callable[[bytes], None] | None = None
        self._fragments: list[bytes] | None = None

    def process_event(self, event: Any) -> None:
        handler = self.on_message
        if handler is None:  # the opening handshake (a Response event), or no reader
            super().process_event(event)
            return
        opcode = event.opcode
        if not (opcode is _TEXT or opcode is _BINARY or opcode is _CONT):
            super().process_event(event)
            return
        if event.fin and self._fragments is None:
            handler(event.data)  # the common case: one frame, one message
            return
        if self._fragments is None:
            self._fragments = []
        self._fragments.append(bytes(event.data))
        if event.fin:  # the protocol checked the sequence and the size
            data, self._fragments = b"".join(self._fragments), None
            handler(data)

    def send_data(self) -> None:
        writes = self.protocol.data_to_send()
        if len(writes) > 1 and all(writes):  # frames only (b"" is the end of the stream)
            self.transport.write(b"".join(writes))  # one write, not one per frame
            return
        self.protocol.writes[:0] = writes  # the library's own handling of the rest
        super().send_data()


async def open_session(
    url: str, cfg: ZeekConfig, topics: list[str], codec: Codec
) -> tuple[BridgeConnection, Ack, list[bytes]]:
    """Connect, subscribe to `topics` ([] = publish only) and wait for the ack. Returns the
    connection, the ack and the messages that arrived after the ack (the reader takes them
    before any other)."""
    ws = await connect(url, create_connection=BridgeConnection, **connect_kwargs(url, cfg))
    first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    early: list[bytes] = []

    def until_ack(data: bytes) -> None:
        if not first.done():
            first.set_result(bytes(data))
        else:
            early.append(bytes(data))

    ws.on_message = until_ack
    try:
        await ws.send(encode_subscription(topics))
        try:
            raw = await asyncio.wait_for(asyncio.shield(first), cfg.ack_timeout)
        except TimeoutError:
            if ws.protocol.close_exc is not None and ws.state.name == "CLOSED":
                raise ws.protocol.close_exc from None
            raise
        msg = codec.decode_message(raw)
        if isinstance(msg, ErrorMessage):
            raise ConnectionError(f"{url} refused the subscription: {msg.code}: {msg.context}")
        if not isinstance(msg, Ack):
            raise ConnectionError(f"{url} sent {type(msg).__name__} instead of an ack")
        return ws, msg, early
    except BaseException:
        ws.on_message = None
        await ws.close()
        raise


class EvidenceReader:
    """Reads one connection until it closes; calls `on_evidence` for each flow evidence.

    Malformed messages are counted (decode_errors_total), logged and skipped; server
    error messages are counted (server_errors_total) and logged; neither ends the
    connection (Zeek keeps it open after an error, PROTOCOL-FACTS §8).
    """

    def __init__(self, codec: Codec, metrics: Metrics, on_evidence: Callable[[FlowEvidence], None]):
        self.codec = codec
        self.metrics = metrics
        self.on_evidence = on_evidence
        self._last_warn = 0.0
        self._suppressed = 0
        self._clock = time.perf_counter
        self._decode_c: Callable[[bytes], FlowEvidence | None] | None = None  # set by run()

    def _warn(self, fmt: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_warn >= 5.0:
            if self._suppressed:
                log.warning("(%d similar messages suppressed)", self._suppressed)
            log.warning(fmt, *args)
            self._last_warn = now
            self._suppressed = 0
        else:
            self._suppressed += 1

    def handle(self, raw: str | bytes) -> None:
        """One message from the server."""
        try:
            msg = wire_events.decode_evidence_message(raw, self.codec)
        except WireError as e:
            self.metrics.count_decode_error(e)
            self._warn("malformed message skipped: %s", e)
            return
        if isinstance(msg, FlowEvidence):
            self.metrics.evidence_received_total += 1
            self.on_evidence(msg)
        elif isinstance(msg, Event):
            log.debug("ignoring event %s", msg.name)
        elif isinstance(msg, ErrorMessage):
            self.metrics.server_errors_total += 1
            self._warn("Zeek reported an error: %s: %s", msg.code, msg.context)
        else:
            self.metrics.count_decode_error("unexpected")
            self._warn("unexpected %s after the handshake; skipped", type(msg).__name__)

    def handle_timed(self, raw: bytes) -> None:
        """handle(), with the time it took in the latency histogram; the compiled decoder is
        called here directly for the common message (flow_evidence in its canonical form)."""
        t0 = self._clock()
        try:
            ev = self._decode_c(raw) if self._decode_c is not None else None
            if ev is not None:
                self.metrics.evidence_received_total += 1
                self.on_evidence(ev)
            else:
                self.handle(raw)
        except Exception:  # a bug must not take the connection down with every message after it
            self.metrics.engine_errors_total += 1
            log.exception("handling a message failed; skipped")
        seconds = self._clock() - t0
        m = self.metrics
        m.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # Metrics.observe_latency, inline
        m.latency_sum += seconds

    async def run(self, ws: BridgeConnection, early: list[bytes] = ()) -> None:  # type: ignore[assignment]
        """Handle every message of the connection as it arrives (in BridgeConnection's
        data_received, see the module docstring); returns when the server closes the
        connection cleanly (e.g. 1001 "Terminating"), raises when it is lost."""
        self._clock = time.perf_counter
        fast = wire_events._compiled_codec(self.codec)
        self._decode_c = fast[0].decode if fast is not None else None
        for raw in early:
            self.handle_timed(raw)
        ws.on_message = self.handle_timed
        try:
            await ws.wait_closed()
        finally:
            ws.on_message = None
        exc = ws.protocol.close_exc
        if not isinstance(exc, ConnectionClosedOK):
            raise exc
