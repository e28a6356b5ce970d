"""The live bridge: Zeek flow evidence in, verdicts out, over Zeek's WebSocket API.

    evidence (zeek/msewatch/evidence) -> EvidenceReader -> engine.process_evidence
        -> VerdictQueue (bounded, survives reconnects) -> VerdictSender -> Zeek
                                                          (zeek/msewatch/verdict)

One connection at a time, to the first endpoint that answers (fail-over in list order).
Lost connections are retried with exponential backoff and jitter; queued verdicts are
sent on the next connection. SIGTERM/SIGINT stop reading evidence, flush the queue for
up to `zeek.shutdown_timeout` seconds (reconnecting publish-only if needed) and exit.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from typing import Any, Iterable, Protocol

from .config_zeek import ZeekConfig
from .evidence import FlowEvidence
from .metrics import Metrics, MetricsServer
from .sinks.zeek_ws import VerdictQueue, VerdictSender
from .sources.zeek_ws import EvidenceReader, open_session
from .wire.events import encode_verdict, verdict_key
from .wire.v1 import UTC, Codec

log = logging.getLogger("msewatch.bridge")


class EngineLike(Protocol):
    def process_evidence(self, ev: FlowEvidence) -> Iterable[Any]: ...


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float, rng: random.Random) -> float:
    """initial * 2**attempt capped at maximum, scaled by a factor in [1-jitter, 1+jitter]."""
    base = min(maximum, initial * (2 ** min(attempt, 62)))
    return base * (1.0 + rng.uniform(-jitter, jitter))


class Bridge:
    def __init__(
        self,
        cfg: ZeekConfig,
        engine: EngineLike,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.metrics = metrics or Metrics()
        self.codec = Codec(UTC if cfg.timestamps == "utc" else None)
        self.queue = VerdictQueue(cfg.queue_size, self.metrics)
        self.sender = VerdictSender(self.queue, self.metrics, confirm_timeout=cfg.ack_timeout)
        self.reader = EvidenceReader(self.codec, self.metrics, self._on_evidence)
        self.rng = rng or random.Random()
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self.engine_errors = 0
        self.ack = None  # the last Ack received (endpoint, version)
        self._acked = False
        self._deadline: float | None = None  # monotonic time by which the flush must end

    # ---- evidence -> verdicts

    def _on_evidence(self, ev: FlowEvidence) -> None:
        try:
            verdicts = self.engine.process_evidence(ev)
        except Exception:
            self.engine_errors += 1
            log.exception("engine failed on evidence for %s; skipped", ev.uid)
            return
        topic = self.cfg.verdict_topic
        for v in verdicts or ():
            try:
                message = encode_verdict(v, topic, self.codec)
            except Exception:
                self.engine_errors += 1
                log.exception("cannot encode verdict %r; skipped", v)
                continue
            self.queue.put(verdict_key(v), message)

    # ---- lifecycle

    def stop(self) -> None:
        """Ask the bridge to flush and exit (safe to call from a signal handler)."""
        self._stopping = True
        if self._deadline is None:
            self._deadline = time.monotonic() + self.cfg.shutdown_timeout
        if self._stop is not None:
            self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError):  # not the main thread / platform
                pass

    def _on_signal(self, sig: int) -> None:
        log.info("%s: stopping; flushing %d queued verdict(s)", signal.Signals(sig).name, len(self.queue))
        self.stop()

    async def run(self) -> None:
        """Run until stop(); returns after the flush (or its timeout)."""
        self._stop = asyncio.Event()
        if self._stopping:
            self._stop.set()
        endpoints = list(self.cfg.endpoints)
        topic = self.cfg.subscription_topic()
        attempt = 0
        index = 0
        first = True
        while True:
            if self._stop.is_set() and self._flush_over():
                break
            if not first:
                self.metrics.reconnects_total += 1
            first = False
            url = endpoints[index % len(endpoints)]
            draining = self._stop.is_set()
            self._acked = False
            try:
                await self._session(url, [] if draining else [topic])
            except asyncio.CancelledError:
                raise
            except Exception as e:  # connection trouble of any kind: retry
                if self._acked:
                    log.warning("connection to %s lost: %s: %s", url, type(e).__name__, e)
                else:
                    log.warning("cannot connect to %s: %s: %s", url, type(e).__name__, e)
            self.metrics.connected = 0
            if self._acked:
                attempt = 0  # it worked: retry the same endpoint promptly
            else:
                index += 1  # fail over to the next endpoint
            if self._stop.is_set() and self._flush_over():
                break
            delay = backoff_delay(attempt, self.cfg.reconnect.initial, self.cfg.reconnect.max, self.cfg.reconnect.jitter, self.rng)
            if self._deadline is not None:
                delay = min(delay, max(0.0, self._deadline - time.monotonic()))
            attempt += 1
            log.info("reconnecting in %.2fs (%d verdict(s) queued)", delay, len(self.queue))
            if not self._stop.is_set():
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(delay)
        left = len(self.queue)
        if left:
            log.error("exiting with %d verdict(s) unsent (shutdown timeout %.1fs)", left, self.cfg.shutdown_timeout)
        else:
            log.info("stopped; all verdicts sent")

    def _flush_over(self) -> bool:
        return not len(self.queue) or self._deadline is None or time.monotonic() >= self._deadline

    async def _session(self, url: str, topics: list[str]) -> None:
        """One connection: returns when the server closed it or after a stop+flush."""
        assert self._stop is not None
        ws, ack = await open_session(url, self.cfg, topics, self.codec)
        self.ack = ack
        self._acked = True
        self.metrics.connected = 1
        log.info(
            "connected to %s: endpoint %s, version %s, subscribed to %s",
            url,
            ack.endpoint,
            ack.version,
            topics or "nothing (publish only)",
            extra={"endpoint": ack.endpoint, "zeek_version": ack.version, "url": url},
        )
        tasks: set[asyncio.Task] = set()
        try:
            sender = asyncio.create_task(self.sender.run(ws), name="verdict-sender")
            tasks.add(sender)
            reader = None
            if topics:
                reader = asyncio.create_task(self.reader.run(ws), name="evidence-reader")
                tasks.add(reader)
            stopper = asyncio.create_task(self._stop.wait(), name="stop")
            tasks.add(stopper)
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if stopper not in done:
                for t in done:  # a reader or sender ended: the connection is gone
                    if t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
                raise ConnectionError(f"{url} closed the connection")
            # stop requested: no more evidence; flush what is queued, then close
            if reader is not None:
                reader.cancel()
            assert self._deadline is not None
            remaining = max(0.0, self._deadline - time.monotonic())
            flushed = asyncio.create_task(self.queue.wait_empty())
            tasks.add(flushed)
            done, _ = await asyncio.wait({flushed, sender}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if sender in done and sender.exception() is not None:
                raise sender.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # a stalled server never answers the closing handshake: bound the wait by
            # what is left of the shutdown budget
            budget = 5.0 if self._deadline is None else max(0.1, self._deadline - time.monotonic())
            try:
                await asyncio.wait_for(ws.close(), budget)
            except Exception:
                ws.transport.abort()


async def run_bridge(cfg: ZeekConfig, engine: EngineLike, metrics_cfg=None, install_signals: bool = True) -> Metrics:
    """Run the bridge (and the metrics endpoint) until SIGTERM/SIGINT; for `msewatch run`."""
    metrics = Metrics()
    server = MetricsServer(metrics, metrics_cfg) if metrics_cfg is not None else None
    if server is not None:
        await server.start()
    bridge = Bridge(cfg, engine, metrics)
    if install_signals:
        bridge.install_signal_handlers()
    try:
        await bridge.run()
    finally:
        if server is not None:
            await server.stop()
    return metrics


def main_run(config: Any, verdict_format: str = "msewatch") -> int:
    """Entry point for `msewatch run --config FILE`: `config` is the main msewatch Config
    with `zeek`, `metrics` and `log` fields. Builds the Engine and runs until a signal.
    `verdict_format` is the format of outputs.verdicts_jsonl (msewatch or ecs)."""
    from .engine import Engine  # the lead's module; imported late so the bridge has no hard dep
    from .metrics import setup_logging

    setup_logging(config.log)
    engine = Engine(config)
    outputs = VerdictOutputs(engine, config.outputs, config.host.local_nets, verdict_format)
    try:
        asyncio.run(run_bridge(config.zeek, outputs, config.metrics))
    finally:
        outputs.close()
    return 0


class VerdictOutputs:
    """Wraps the engine: every verdict also goes to the configured outputs (a JSON-lines
    file for EVE annotation, Suricata's dataset over its unix socket). An output that
    fails is logged and counted; it never stops verdicts from reaching Zeek."""

    def __init__(self, engine: Any, cfg: Any, local_nets: list[str], verdict_format: str = "msewatch") -> None:
        import ipaddress

        from .ecs import formatter

        self.engine = engine
        self._format = formatter(verdict_format)  # verdict dict -> what the JSON-lines file gets
        self.errors = 0
        self._jsonl = open(cfg.verdicts_jsonl, "ab") if cfg.verdicts_jsonl else None
        self._feedback = None
        if cfg.suricata_socket:
            from .suricata.feedback import PeerFeedback, SuricataSocket

            self._feedback = PeerFeedback(
                SuricataSocket(cfg.suricata_socket),
                ttl=cfg.dataset_ttl,
                ip_set=cfg.dataset,
                min_probability=cfg.dataset_min_probability,
                local_nets=tuple(ipaddress.ip_network(n) for n in local_nets),
            )

    def process_evidence(self, ev: Any) -> list:
        verdicts = self.engine.process_evidence(ev)
        if self._jsonl is None and self._feedback is None:
            return verdicts
        import orjson

        for v in verdicts:
            d = v.to_dict()
            try:
                if self._jsonl is not None:
                    self._jsonl.write(orjson.dumps(self._format(d)) + b"\n")
                if self._feedback is not None:
                    self._feedback.on_verdict(d)
            except Exception as e:  # an output must not stop the bridge
                self.errors += 1
                log.error("verdict output failed: %s", e)
        if self._jsonl is not None:
            self._jsonl.flush()
        return verdicts

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
