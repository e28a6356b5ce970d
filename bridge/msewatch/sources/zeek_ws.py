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
library's per-message coroutine overhead (docs/performance.md, "The bridge"). Once the
handshake is done, the common frame (a whole text message up to 1 MiB) is cut from the stream
by `BridgeConnection` itself; every other frame still goes through the library's parser
(tests/bridge/test_framing.py holds the two equal).
"""

from __future__ import annotations

import asyncio
import fcntl
import inspect
import logging
import os
import ssl
import struct
import termios
import time
from bisect import bisect_left
from typing import Any, Callable
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK
from websockets.frames import Opcode, apply_mask as _apply_mask
from websockets.protocol import CLIENT as _CLIENT, State

from .. import compiled
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
_OPEN = State.OPEN
_HEAD16, _HEAD64 = struct.Struct("!BBH").pack, struct.Struct("!BBQ").pack
def _ioctl_int(fd: int, request: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, request, b"\0\0\0\0"))[0]


_FIONREAD = getattr(termios, "FIONREAD", 0x541B)
_wire_c = compiled.module("_wire")
_client_frames = getattr(_wire_c, "client_frames", None)  # None: the frames are built in Python
_SMALL = 1 << 20  # frames up to this size are cut here (BridgeConnection.data_received)
# a read of fewer bytes than this emptied the socket's receive buffer (asyncio reads up to
# 256 KiB at a time, uvloop 64 KiB)
_DRAINED = 1 << 15
FLUSH_AFTER = 0.001  # seconds of handling one read's messages before their verdicts are written (after_messages)


class BridgeConnection(ClientConnection):
    """websockets' client connection, with data messages handed to `on_message(bytes)` as
    the protocol parses them (fragments joined) instead of queued for `recv()`, and the
    frames of one flush written to the socket in one call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_message: Callable[[bytes], None] | None = None
        self._fragments: list[bytes] | None = None
        self._framing = False  # frames split here (enable_framing)
        self._partial = b""  # the start of a frame not yet complete (framing)
        self._through = 0  # bytes of a frame being fed to the protocol as they come (framing)
        self._small = 0  # the largest frame cut here: _SMALL, or the protocol's max_size if smaller
        # called once the messages of a read took `flush_after` seconds to handle, and after
        # its last: the bridge writes the verdicts queued so far (VerdictSender.write_now), so
        # that the first message of a large read does not wait for the last
        self.after_messages: Callable[[], Any] | None = None
        self.flush_after = FLUSH_AFTER
        self._due: float | None = None  # verdicts are pending from a read whose write was put off: by then
        self._fd = -1  # the socket, for _readable (connection_made)
        self._keys, self._keys_at = b"", 0  # random bytes for send_texts' mask keys, and how many are used

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1

    # Framing: the common frame - one whole unmasked text message of at most 1 MiB - is
    # cut from the stream here and handed to on_message without the protocol's parser (its
    # generators and buffer copies were ~5 us of a bridge message's ~25). Every other frame
    # (control frames, fragments, binary, masked or oversized ones) goes to the protocol whole,
    # or, when large, as it arrives with its length counted, so the protocol's parser is at a
    # frame boundary whenever this code looks at the stream and sees and checks all it did.

    def enable_framing(self) -> bool:
        """Split frames here from now on. Only at a frame boundary: right after the opening
        handshake, before the subscription (Zeek sends nothing before it), with nothing
        buffered in the protocol; otherwise the protocol keeps doing it all."""
        p = self.protocol
        if p.state is not _OPEN or p.reader.buffer or p.events or self._fragments is not None:
            return False
        self._small = min(x for x in (_SMALL, p.max_message_size, p.max_fragment_size) if x is not None)
        self._framing = True
        return True

    def _to_protocol(self, data: bytes) -> None:
        super().data_received(data)
        if self.protocol.state is not _OPEN:  # closing: the protocol takes the rest of the stream
            self._framing = False

    def data_received(self, data: bytes) -> None:
        if not self._framing:
            super().data_received(data)
            if self.after_messages is not None:
                self.after_messages()  # the verdicts of what the protocol handed on_message
            return
        if self._through:
            k = min(self._through, len(data))
            self._through -= k
            self._to_protocol(data[:k])
            data = data[k:]
            if not data or not self._framing:
                if data:
                    super().data_received(data)
                return
        buf = self._partial + data if self._partial else data
        n, pos = len(buf), 0
        handled, after = 0, self.after_messages
        if after is not None:
            clock, every = time.perf_counter, self.flush_after
            due = self._due if self._due is not None else clock() + every
        while n - pos >= 2:
            b1 = buf[pos + 1]
            ln = b1 & 0x7F
            if ln < 126:
                hdr = 2
            elif ln == 126:
                if n - pos < 4:
                    break
                ln, hdr = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            else:
                if n - pos < 10:
                    break
                ln, hdr = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if b1 & 0x80:  # a mask key (a server must not mask: the protocol fails it)
                hdr += 4
            end = pos + hdr + ln
            handler = self.on_message
            if buf[pos] == 0x81 and b1 < 0x80 and ln <= self._small and handler is not None and self._fragments is None:
                if end > n:
                    break  # wait for the rest of this small frame
                handler(buf[pos + hdr:end])
                pos = end
                handled += 1
                if after is not None and not handled & 3 and clock() >= due:  # the clock every 4th message
                    after()
                    handled = 0
                    due = clock() + every
                continue
            # any other frame goes to the protocol: whole, or as it arrives (the large ones)
            if end > n:
                self._through = end - n
                self._to_protocol(buf[pos:])
                self._partial = b""
                return
            self._to_protocol(buf[pos:end])
            pos = end
            if not self._framing:
                self._partial = b""
                if pos < n:
                    super().data_received(buf[pos:])
                return
        self._partial = buf[pos:]
        if after is not None and (handled or self._due is not None):
            # the verdicts of this read (and of a read before it) go out now, unless more input
            # is already waiting and they are younger than flush_after: then the next read's
            # end writes them with its own, one write instead of one per read while busy. A read
            # shorter than _DRAINED emptied the socket (the event loop reads up to 64-256 KiB):
            # no system call to ask
            if len(data) >= _DRAINED and clock() < due and self._readable() > 0:
                self._due = due
            else:
                self._due = None
                after()

    def _readable(self) -> int:
        """Bytes waiting in the socket's receive buffer (FIONREAD), 0 if it cannot tell."""
        try:
            return _ioctl_int(self._fd, _FIONREAD)
        except (OSError, TypeError, AttributeError):
            return 0

    def eof_received(self) -> None:
        if self._framing and self._partial:  # a frame cut short: the protocol says so
            self._framing, partial, self._partial = False, self._partial, b""
            super().data_received(partial)
        return super().eof_received()

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

    def _mask_keys(self, need: int) -> tuple[bytes, int]:
        """`need` random bytes for mask keys: (a pool, where they start in it). One
        getrandom() per 4 KiB of keys, not one per write."""
        at = self._keys_at
        if at + need > len(self._keys):
            self._keys, at = os.urandom(max(4096, need)), 0
        self._keys_at = at + need
        return self._keys, at

    def write_texts(self, messages: list[bytes]) -> None:
        """send_texts() and send_data() in one: when the frames are all the protocol holds
        unwritten (a ping, a pong or a close frame goes out as it is made: websockets'
        send_data), they go straight to the transport."""
        p = self.protocol
        before = len(p.writes)
        self.send_texts(messages)
        if before == 0 and len(p.writes) == 1:
            self.transport.write(p.writes.pop())
        else:
            self.send_data()

    def send_texts(self, messages: list[str | bytes]) -> None:
        """Queue text frames, one per message, as the protocol's send_text would (a client's
        frames: masked, each with its own random key), built in one go; inside
        send_context(), which writes them. The protocol's own send_text when it is not
        plainly open (it raises what it raises) or has an extension."""
        p = self.protocol
        if p.state is not _OPEN or p.expect_continuation_frame or p.extensions or p.side is not _CLIENT:
            for m in messages:
                p.send_text(m.encode() if type(m) is str else m)
            return
        need = 4 * len(messages)
        pool, at = self._mask_keys(need)
        if _client_frames is not None:
            try:
                p.writes.append(_client_frames(messages, pool, at))
                return
            except TypeError:  # a str among them
                pass
        keys = pool[at:at + need]
        out = []
        for i, m in enumerate(messages):
            if type(m) is str:
                m = m.encode()
            n = len(m)
            if n < 126:
                head = bytes((0x81, 0x80 | n))
            elif n < 65536:
                head = _HEAD16(0x81, 0xFE, n)
            else:
                head = _HEAD64(0x81, 0xFF, n)
            key = keys[4 * i:4 * i + 4]
            out += (head, key, _apply_mask(m, key))
        p.writes.append(b"".join(out))

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
    ws.enable_framing()
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
        self.on_event: Callable[[Event], None] | None = None  # other events on the topic
        self._last_warn = 0.0
        self._suppressed = 0
        self._clock = time.perf_counter
        self._decode_c: Callable[[bytes], FlowEvidence | None] | None = None  # set by run()
        # a handler that does all of handle_timed and on_evidence for the common message
        # (Bridge.message_handler); run() uses it instead of handle_timed when set
        self.fast: Callable[[bytes], None] | None = None

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
            if self.on_event is not None:  # e.g. the package's MSEWatch::hello
                self.on_event(msg)
            else:
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
        fast = wire_events._compiled_codec(self.codec)
        self._decode_c = fast[0].decode if fast is not None else None
        handler = self.fast or self.handle_timed
        for raw in early:
            handler(raw)
        if early and ws.after_messages is not None:
            ws.after_messages()
        ws.on_message = handler
        try:
            await ws.wait_closed()
        finally:
            ws.on_message = None
        exc = ws.protocol.close_exc
        if not isinstance(exc, ConnectionClosedOK):
            raise exc
