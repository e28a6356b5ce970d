"""Bridge metrics for Prometheus (prometheus_client), and structured logging.

The hot path only does `metrics.<counter> += 1` on plain attributes (and a dict or list
slot for the labelled ones): one event loop owns them, and an increment costs tens of
nanoseconds where a prometheus_client child's `inc()` costs a lock and ~20x more (the
bridge must keep up with 50k evidence messages/s per core; docs/performance.md).
prometheus_client does the rest: a Collector reads the attributes at scrape time, its
HTTP server serves them together with the process and Python metrics and build_info.

Adding a counter is one line in `Metrics`:

    evidence_truncated_total: int = counter("evidence cut to the budget")

(a bare `foo_total: int = 0` is exported too, as a counter with a generic help text).
Every msewatch_* series carries a `shard` label ("i/N", or "all" for an unsharded bridge).
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from bisect import bisect_left
from dataclasses import dataclass, field, fields
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.exposition import generate_latest, start_http_server
from prometheus_client.registry import Collector

from . import __version__
from .config_zeek import LogConfig, MetricsConfig

log = logging.getLogger("msewatch.metrics")

PREFIX = "msewatch_"

# Seconds one evidence message takes from arrival to its verdicts queued (decode, engine,
# encode). The engine's budget is 20 us a message at 50k/s; the tail shows stalls.
LATENCY_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1, 1.0)

# Label values created up front, so every series exists (at 0) from the first scrape
FLOW_LABELS = ("p2p_likely", "normal_likely", "unknown")
HOST_LABELS = ("p2p_host", "normal_host", "unknown")
PROTOCOLS = ("bt_mse", "bt_plain", "utp", "dht", "tracker", "lsd", "tls", "ssh", "http", "dns", "quic", "unknown")
DECODE_REASONS = ("json", "message", "event", "value", "unexpected", "other")
OUTPUTS = ("verdicts_jsonl", "suricata_dataset")


def counter(help: str) -> Any:
    """A plain int attribute exported as a Prometheus counter."""
    return field(default=0, metadata={"type": "counter", "help": help})


def gauge(help: str) -> Any:
    """A plain int attribute exported as a Prometheus gauge."""
    return field(default=0, metadata={"type": "gauge", "help": help})


def decode_error_reason(err: Exception) -> str:
    """A small fixed set of reasons for a message the bridge could not use (label values)."""
    path = getattr(err, "path", "")
    text = str(err)
    if "malformed JSON" in text:
        return "json"
    if path in ("message", "type", "topic") or path.startswith("subscription"):
        return "message"
    if path.startswith("data[2].data[1]") or path.startswith("data[2].data[0]") or "takes" in text:
        return "event"
    if path.startswith("data"):
        return "value"
    return "other"


@dataclass(eq=False)
class Metrics:
    """The bridge's counters. Plain attributes: one event loop owns them."""

    evidence_received_total: int = counter("MSEWatch::flow_evidence events received and decoded")
    evidence_repeated_total: int = counter("evidence for a flow already answered, answered again from the cache")
    verdicts_sent_total: int = counter("verdict events confirmed delivered to Zeek")
    labels_sent_total: int = counter("flow verdicts of them sent as compact conn.log labels (MSEWatch::flow_labels)")
    verdicts_dropped_total: int = counter("verdicts dropped because the outgoing queue was full")
    reconnects_total: int = counter("connection attempts after the first (or after a loss)")
    server_errors_total: int = counter("error messages received from the Zeek server")
    engine_errors_total: int = counter("evidence the engine failed on (skipped, logged)")
    evidence_truncated_total: int = counter("evidence whose heads or sizes were cut to the budget")
    verdicts_unencodable_total: int = counter("verdicts that could not be encoded for Zeek (skipped, logged)")
    reopens_total: int = counter("SIGHUPs handled: output and log files reopened")
    state_saves_total: int = counter("host state saved to state.path")
    state_save_errors_total: int = counter("host state saves that failed (logged; the previous file stays)")
    state_load_errors_total: int = counter("state.path unreadable or unusable at start (logged; started with empty host state)")
    queue_depth: int = gauge("verdicts waiting in the outgoing queue")
    connected: int = gauge("1 while a Zeek WebSocket connection is established")
    # -- labelled: a dict slot per label set (kind, label, protocol) / reason / output
    verdicts: dict = field(default_factory=dict, repr=False)
    decode_errors: dict = field(default_factory=lambda: dict.fromkeys(DECODE_REASONS, 0), repr=False)
    output_errors: dict = field(default_factory=lambda: dict.fromkeys(OUTPUTS, 0), repr=False)
    # -- per-message processing time: counts per LATENCY_BUCKETS slot (+Inf last) and their sum
    latency_counts: list = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1), repr=False)
    latency_sum: float = field(default=0.0, repr=False)
    shard: str = field(default="all", metadata={"label": True})

    def __post_init__(self) -> None:
        for label in FLOW_LABELS:
            for proto in PROTOCOLS:
                self.verdicts.setdefault(("flow", label, proto), 0)
        for label in HOST_LABELS:
            self.verdicts.setdefault(("host", label, ""), 0)
        self._registry: CollectorRegistry | None = None

    # -- hot path helpers (each a few dict/list operations)

    def count_verdict(self, kind: str, label: str, protocol: str | None) -> None:
        key = (kind, label, protocol or ("unknown" if kind == "flow" else ""))
        self.verdicts[key] = self.verdicts.get(key, 0) + 1

    def count_decode_error(self, err: Exception | str) -> None:
        reason = err if isinstance(err, str) else decode_error_reason(err)
        self.decode_errors[reason] = self.decode_errors.get(reason, 0) + 1

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    @property
    def decode_errors_total(self) -> int:
        return sum(self.decode_errors.values())

    @decode_errors_total.setter
    def decode_errors_total(self, value: int) -> None:
        # `metrics.decode_errors_total += 1` (the old call style) counts as reason "other"
        self.decode_errors["other"] += value - self.decode_errors_total

    # -- exposition

    @property
    def registry(self) -> CollectorRegistry:
        """A registry of its own (no global state): msewatch_*, process_*, python_*."""
        if self._registry is None:
            reg = CollectorRegistry(auto_describe=False)
            reg.register(_MetricsCollector(self))
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
            GCCollector(registry=reg)
            self._registry = reg
        return self._registry

    def render(self) -> str:
        """The Prometheus text exposition of everything the HTTP endpoint serves."""
        return generate_latest(self.registry).decode()


def _plain_fields(m: Metrics) -> Iterator[tuple[str, str, str]]:
    """(name, type, help) of every plain int attribute: the declared ones and bare ones."""
    for f in fields(m):
        if f.metadata.get("label") or f.type not in ("int", int):
            continue
        kind = f.metadata.get("type") or ("counter" if f.name.endswith("_total") else "gauge")
        yield f.name, kind, f.metadata.get("help") or f"msewatch {f.name.replace('_', ' ')}"


class _MetricsCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self):
        m = self.m
        shard = [m.shard]
        yield _info(m.shard)
        for name, kind, text in _plain_fields(m):
            value = getattr(m, name)
            if kind == "counter":
                fam = CounterMetricFamily(PREFIX + name.removesuffix("_total"), text, labels=["shard"])
            else:
                fam = GaugeMetricFamily(PREFIX + name, text, labels=["shard"])
            fam.add_metric(shard, value)
            yield fam
        fam = CounterMetricFamily(PREFIX + "verdicts", "verdicts decided, by kind (flow/host), label and protocol",
                                  labels=["shard", "kind", "label", "protocol"])
        for (kind, label, proto), n in sorted(dict(m.verdicts).items()):
            fam.add_metric([m.shard, kind, label, proto], n)
        yield fam
        fam = CounterMetricFamily(PREFIX + "decode_errors", "messages from Zeek that were malformed and skipped, by reason",
                                  labels=["shard", "reason"])
        for reason, n in sorted(dict(m.decode_errors).items()):
            fam.add_metric([m.shard, reason], n)
        yield fam
        fam = CounterMetricFamily(PREFIX + "output_errors", "verdicts an output (JSON-lines file, Suricata dataset) failed to take",
                                  labels=["shard", "output"])
        for output, n in sorted(dict(m.output_errors).items()):
            fam.add_metric([m.shard, output], n)
        yield fam
        counts = list(m.latency_counts)
        cumulative, buckets = 0, []
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), counts):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        fam = HistogramMetricFamily(PREFIX + "message_processing_seconds",
                                    "time from an evidence message's arrival to its verdicts queued",
                                    labels=["shard"])
        fam.add_metric(shard, buckets, m.latency_sum)
        yield fam


def _info(shard: str) -> InfoMetricFamily:
    fam = InfoMetricFamily(PREFIX + "build", "msewatch version and runtime", labels=["shard"])
    fam.add_metric([shard], {"version": __version__, "python": platform.python_version()})
    return fam


class MetricsPortError(Exception):
    """The metrics port cannot be bound; the message names the key and the flag."""


class MetricsServer:
    """Serves the metrics over HTTP (prometheus_client's server, in a daemon thread)."""

    def __init__(self, metrics: Metrics, cfg: MetricsConfig) -> None:
        self.metrics = metrics
        self.cfg = cfg
        self._httpd: Any = None

    @property
    def port(self) -> int | None:
        return None if self._httpd is None else self._httpd.server_address[1]

    def start_sync(self) -> None:
        if not self.cfg.enabled:
            return
        try:
            self._httpd, _thread = start_http_server(self.cfg.port, self.cfg.listen, registry=self.metrics.registry)
        except OSError as e:
            raise MetricsPortError(
                f"cannot serve metrics on {self.cfg.listen}:{self.cfg.port}: {e.strerror or e}; choose another port "
                f"with --metrics-port or metrics.port (shard i of N listens on metrics.port + i), or metrics.enabled: false"
            ) from None
        log.info("metrics on http://%s:%s/metrics", self.cfg.listen, self.port)

    def stop_sync(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    async def start(self) -> None:
        self.start_sync()

    async def stop(self) -> None:
        import asyncio

        await asyncio.to_thread(self.stop_sync)


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


class ReopenableFileHandler(logging.FileHandler):
    """A log file that `reopen()` (on SIGHUP) closes and opens again by name, so that
    logrotate's rename + HUP moves logging to the new file without losing a line."""

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.flush()
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


def setup_logging(cfg: LogConfig, stream=None) -> logging.Handler:
    """Configure the root logger: text or JSON lines on stderr (or `log.file`) at cfg.level.
    Returns the handler (a ReopenableFileHandler when logging to a file)."""
    file = getattr(cfg, "file", None)
    handler: logging.Handler
    if file and stream is None:
        try:
            handler = ReopenableFileHandler(file, encoding="utf-8")
        except OSError as e:
            raise OSError(f"log.file {file}: cannot open: {e.strerror}") from None
    else:
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
    return handler
