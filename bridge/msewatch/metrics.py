"""Bridge metrics in the Prometheus text exposition format, and structured logging.

A tiny asyncio HTTP server answers GET /metrics (any path, in fact) on a local port;
no third-party client library is needed for a handful of counters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from dataclasses import dataclass, fields

from .config_zeek import LogConfig, MetricsConfig

log = logging.getLogger("msewatch.metrics")

_HELP = {
    "evidence_received_total": ("counter", "MSEWatch::flow_evidence events received and decoded"),
    "verdicts_sent_total": ("counter", "verdict events confirmed sent to Zeek"),
    "verdicts_dropped_total": ("counter", "verdicts dropped because the outgoing queue was full"),
    "queue_depth": ("gauge", "verdicts waiting in the outgoing queue"),
    "reconnects_total": ("counter", "connection attempts after the first (or after a loss)"),
    "decode_errors_total": ("counter", "received messages that were malformed and skipped"),
    "server_errors_total": ("counter", "error messages received from the Zeek server"),
    "connected": ("gauge", "1 while a Zeek WebSocket connection is established"),
}


@dataclass
class Metrics:
    """The bridge's counters. Plain attributes: one event loop owns them."""

    evidence_received_total: int = 0
    verdicts_sent_total: int = 0
    verdicts_dropped_total: int = 0
    queue_depth: int = 0
    reconnects_total: int = 0
    decode_errors_total: int = 0
    server_errors_total: int = 0
    connected: int = 0

    def render(self, prefix: str = "msewatch_") -> str:
        lines = []
        for f in fields(self):
            kind, text = _HELP[f.name]
            name = prefix + f.name
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name} {getattr(self, f.name)}")
        return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves `metrics.render()` over HTTP/1.0-style one-shot responses."""

    def __init__(self, metrics: Metrics, cfg: MetricsConfig) -> None:
        self.metrics = metrics
        self.cfg = cfg
        self._server: asyncio.base_events.Server | None = None

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        if not self.cfg.enabled:
            return
        self._server = await asyncio.start_server(self._handle, self.cfg.listen, self.cfg.port)
        log.info("metrics on http://%s:%s/metrics", self.cfg.listen, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            method = request.split(b" ", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, body = "405 Method Not Allowed", b""
            else:
                status, body = "200 OK", self.metrics.render().encode()
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head + (body if method == b"GET" else b""))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus any `extra=` fields."""

    _STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 6),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(cfg: LogConfig, stream=None) -> None:
    """Configure the root logger: text or JSON lines on stderr at cfg.level."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if cfg.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(cfg.level.upper())
    # websockets logs every frame at debug; keep it at info unless asked for
    logging.getLogger("websockets").setLevel(max(logging.INFO, root.level))
