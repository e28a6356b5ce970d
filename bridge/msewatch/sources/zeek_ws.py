"""Flow evidence from Zeek over the WebSocket API (v1 JSON, /v1/messages/json).

Connecting: open the WebSocket with an `X-Application-Name` header (Zeek logs it in
cluster.log), send the subscription (a JSON array of topic prefixes), wait for the ack
`{"type":"ack","endpoint":..,"version":..}`. Then every text message is a data-message or
an error; `EvidenceReader` turns MSEWatch::flow_evidence events into FlowEvidence.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import time
from typing import Any, Callable
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

from ..config_zeek import TLSConfig, ZeekConfig
from ..evidence import FlowEvidence
from ..metrics import Metrics
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


async def open_session(url: str, cfg: ZeekConfig, topics: list[str], codec: Codec) -> tuple[ClientConnection, Ack]:
    """Connect, subscribe to `topics` ([] = publish only) and wait for the ack."""
    ws = await connect(url, **connect_kwargs(url, cfg))
    try:
        await ws.send(encode_subscription(topics))
        raw = await asyncio.wait_for(ws.recv(), cfg.ack_timeout)
        msg = codec.decode_message(raw)
        if isinstance(msg, ErrorMessage):
            raise ConnectionError(f"{url} refused the subscription: {msg.code}: {msg.context}")
        if not isinstance(msg, Ack):
            raise ConnectionError(f"{url} sent {type(msg).__name__} instead of an ack")
        return ws, msg
    except BaseException:
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

    async def run(self, ws: ClientConnection) -> None:
        """Returns when the server closes the connection (e.g. 1001 "Terminating")."""
        observe = self.metrics.observe_latency
        clock = time.perf_counter
        async for raw in ws:
            t0 = clock()
            self.handle(raw)
            observe(clock() - t0)
