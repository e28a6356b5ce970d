"""The live bridge: Zeek flow evidence in, verdicts out, over Zeek's WebSocket API.

    evidence (zeek/msewatch/evidence) -> EvidenceReader -> engine.process_evidence
        -> VerdictQueue (bounded, survives reconnects) -> VerdictSender -> Zeek
                                                          (zeek/msewatch/verdict)

Zeek sends a flow's evidence again until its verdict arrives (after a bridge restart or
reconnect); a uid answered before is answered again from AnsweredCache, not re-decided.

One connection at a time, to the first endpoint that answers (fail-over in list order).
Lost connections are retried with exponential backoff and jitter; queued verdicts are
sent on the next connection. SIGTERM/SIGINT stop reading evidence, flush the queue for
up to `zeek.shutdown_timeout` seconds (reconnecting publish-only if needed) and exit.
SIGHUP reopens every output and log file by name (what logrotate's postrotate sends).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import random
import signal
import socket
import time
from bisect import bisect_left
from typing import Any, Callable, Iterable, Protocol
from urllib.parse import urlsplit

from .config_zeek import ZeekConfig
from .evidence import FlowEvidence
from .metrics import LATENCY_BUCKETS, Metrics, MetricsServer
from .sinks.zeek_ws import AnsweredCache, VerdictQueue, VerdictSender
from .sources.zeek_ws import EvidenceReader, open_session
from .verdict import FlowVerdict
from .wire.events import _compiled_codec as compiled_codec
from .wire.events import FEATURE_FLOW_LABELS, HELLO, conn_label, encode_flow_labels, encode_verdict_bytes, packable, verdict_key
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
        freeze_gc: bool = False,
    ) -> None:
        self.cfg = cfg
        self.freeze_gc = freeze_gc  # run() moves what start-up made out of the collector's way (gc.freeze)
        self.engine = engine
        self.metrics = metrics or Metrics()
        self.codec = Codec(UTC if cfg.timestamps == "utc" else None)
        self.queue = VerdictQueue(cfg.queue_size, self.metrics, cfg.label_batch, cfg.label_delay)
        self.answered = AnsweredCache(cfg.answered_cache)
        # flow labels whose verdicts always go in full; the others may go as compact labels
        self._full = frozenset(cfg.full_verdicts)
        self._compact = len(self._full) < 3
        topic = cfg.verdict_topic
        self.sender = VerdictSender(self.queue, self.metrics, confirm_timeout=cfg.ack_timeout,
                                    encode_labels=(lambda u, l: encode_flow_labels(u, l, topic)) if self._compact else None)
        self.reader = EvidenceReader(self.codec, self.metrics, self._on_evidence)
        self.reader.on_event = self._on_event
        self._stats = getattr(engine, "stats", None)
        fast = compiled_codec(self.codec)  # the compiled verdict encoder, or None
        self._encode_c = fast[1].encode if fast is not None else None
        self.reader.fast = self.message_handler()
        self.rng = rng or random.Random()
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self.ack = None  # the last Ack received (endpoint, version)
        self._acked = False
        self._deadline: float | None = None  # monotonic time by which the flush must end
        self.on_reopen: list[Callable[[], None]] = []  # called on SIGHUP (outputs, log file)
        self._failed_streak: dict[str, int] = {}  # url -> connection failures in a row

    # ---- evidence -> verdicts

    @property
    def engine_errors(self) -> int:
        return self.metrics.engine_errors_total + self.metrics.verdicts_unencodable_total

    def _on_evidence(self, ev: FlowEvidence) -> None:
        """One flow's evidence: decided once (its verdicts encoded and queued for Zeek, and
        remembered by uid), or answered again from AnsweredCache when Zeek resends it."""
        uid = ev.uid
        answers = self.answered.get(uid)
        if answers is not None:  # Zeek sent it again: same answer, no second decision
            self.metrics.evidence_repeated_total += 1
            if type(answers) is not tuple:  # one flow verdict, sent in full: its message alone
                self.queue.put(uid, answers, None)
            elif type(answers[0]) is not tuple:  # one flow verdict that may go as a label: (message, label)
                self.queue.put(uid, answers[0], answers[1])
            else:
                for key, message, label in answers:
                    self.queue.put(key, message, label)
            return
        try:
            verdicts = self.engine.process_evidence(ev)
        except Exception:
            self.metrics.engine_errors_total += 1
            log.exception("engine failed on evidence for %s; skipped", uid)
            return
        stats = self._stats  # the engine counts what it cut to the budget
        if stats is not None:
            self.metrics.evidence_truncated_total = stats.evidence_truncated
        self._answer(uid, verdicts)

    def _answer(self, uid: str, verdicts: Iterable[Any]) -> None:
        """Encode and queue a flow's verdicts for Zeek, and remember them by its uid."""
        metrics = self.metrics
        topic = self.cfg.verdict_topic
        counts = metrics.verdicts
        put = self.queue.put
        encode_c = self._encode_c
        full = self._full
        compact = self._compact
        produced = []
        for v in verdicts or ():
            flow = type(v) is FlowVerdict
            if flow or hasattr(v, "uid"):  # Metrics.count_verdict, inline
                ck = ("flow", v.label, v.protocol or "unknown")
                key = v.uid
            else:
                ck = ("host", v.label, "")
                key = verdict_key(v)
            counts[ck] = counts.get(ck, 0) + 1
            message = encode_c(v, topic) if flow and encode_c is not None else None
            if message is None:
                try:
                    message = encode_verdict_bytes(v, topic, self.codec)
                except Exception as e:  # e.g. decided in year 10000: Zeek's timestamps cannot hold it
                    metrics.verdicts_unencodable_total += 1
                    log.error("cannot encode the verdict for %s (%s: %s); dropped", key, type(e).__name__, e)
                    continue
            label = None
            if compact and flow and v.label not in full:  # may go as a compact conn.log label
                label = conn_label(v)
                if not packable(key, label):
                    label = None
            produced.append((key, message, label))
            put(key, message, label)
        # The flow's one verdict is remembered as its message, bytes, and its label, a str kept
        # beside it (AnsweredCache): nothing the garbage collector walks. Nested tuples from
        # CPython's free list piled up in the young generation (80k at 25k/s) and the
        # collection that finally came walked them all in one ~7 ms pause of the event loop;
        # a (message, label) tuple per flow still made each young collection ~1 ms.
        if len(produced) == 1 and produced[0][0] == uid:
            _, message, label = produced[0]
            self.answered.put(uid, message, label)
        else:
            self.answered.put(uid, tuple(produced))

    def message_handler(self) -> Callable[[bytes], None] | None:
        """One data message, handled in one function for the common case: flow evidence the
        compiled decoder takes, a uid not answered before, and one flow verdict the compiled
        encoder writes. It does what EvidenceReader.handle_timed, _on_evidence and _answer do
        for it, with their state bound to locals: per message at 25k/s that glue
        was about 2 us of the bridge's ~20 a message in-process (docs/performance.md, "Latency
        at 25k/s, third stop"). Anything else goes to those methods; tests/bridge/test_bridge.py
        holds the two paths' results equal. None without the compiled codec."""
        fast = compiled_codec(self.codec)
        if fast is None:
            return None
        decode, encode = fast[0].decode, fast[1].encode
        reader, metrics, queue, answered = self.reader, self.metrics, self.queue, self.answered
        clock, buckets, hist = time.perf_counter, LATENCY_BUCKETS, metrics.latency_counts
        segments = answered._segments  # AnsweredCache's dicts, changed in place
        seen, mask = answered.seen, answered.mask
        remember = answered.put
        process = self.engine.process_evidence
        stats = self._stats
        counts = metrics.verdicts
        topic = self.cfg.verdict_topic
        full, compact = self._full, self._compact
        put = queue.put
        other, on_evidence, answer = reader.handle, self._on_evidence, self._answer

        def on_message(raw: bytes) -> None:
            t0 = clock()
            try:
                ev = decode(raw)
                if ev is None:  # any other message, or evidence the compiled decoder leaves
                    other(raw)
                else:
                    metrics.evidence_received_total += 1
                    uid = ev.uid
                    for seg in segments if seen[hash(uid) & mask] else ():  # AnsweredCache.get's first look
                        if uid in seg:  # answered before: _on_evidence answers it again
                            on_evidence(ev)
                            break
                    else:
                        try:
                            verdicts = process(ev)
                        except Exception:
                            metrics.engine_errors_total += 1
                            log.exception("engine failed on evidence for %s; skipped", uid)
                        else:
                            if stats is not None:
                                metrics.evidence_truncated_total = stats.evidence_truncated
                            v = verdicts[0] if type(verdicts) is list and len(verdicts) == 1 else None
                            message = (encode(v, topic) if type(v) is FlowVerdict and v.uid == uid else None)
                            if message is None:
                                answer(uid, verdicts)
                            else:
                                label = v.label
                                ck = ("flow", label, v.protocol or "unknown")
                                counts[ck] = counts.get(ck, 0) + 1
                                if compact and label not in full:
                                    label = conn_label(v)
                                    if not packable(uid, label):
                                        label = None
                                else:
                                    label = None
                                put(uid, message, label)
                                remember(uid, message, label)
            except Exception:  # a bug must not take the connection down with every message after it
                metrics.engine_errors_total += 1
                log.exception("handling a message failed; skipped")
            seconds = clock() - t0
            hist[bisect_left(buckets, seconds)] += 1  # Metrics.observe_latency, inline
            metrics.latency_sum += seconds

        return on_message

    def _on_event(self, event: Any) -> None:
        """An event on the evidence topic other than flow evidence: the package's hello says
        whether it takes compact labels on this connection."""
        if event.name == HELLO and self._compact:
            features = event.args[0] if event.args else ()
            on = isinstance(features, (list, tuple)) and FEATURE_FLOW_LABELS in features
            if on and not self.sender.labels:
                log.info("Zeek's package takes compact labels: flows labelled other than %s go to it as "
                         "conn.log labels (zeek.full_verdicts)", ", ".join(sorted(self._full)) or "nothing")
            self.sender.labels = on

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
        try:
            loop.add_signal_handler(signal.SIGHUP, self.reopen)
        except (NotImplementedError, RuntimeError):
            pass

    def reopen(self) -> None:
        """SIGHUP: reopen every output and log file. Runs in the event loop between two
        messages, so no verdict is half-written or lost: the old file gets everything up
        to here, the new one everything after."""
        self.metrics.reopens_total += 1
        for callback in self.on_reopen:
            try:
                callback()
            except Exception as e:  # a file that cannot be reopened must not stop the bridge
                log.error("SIGHUP: reopening failed: %s", e)
        log.info("SIGHUP: output and log files reopened")

    def _on_signal(self, sig: int) -> None:
        log.info("%s: stopping; flushing %d queued verdict(s)", signal.Signals(sig).name, len(self.queue))
        self.stop()

    async def run(self) -> None:
        """Run until stop(); returns after the flush (or its timeout)."""
        if self.freeze_gc:
            # Start-up (imports, pydantic models, the engine's tables) leaves some 10^5 objects
            # that live as long as the process; a full collection walks them all, a pause of
            # ~20 ms in the event loop every few seconds at 25k messages/s. Frozen, they are
            # never walked again; what is made from here on is collected as usual.
            gc.collect()
            gc.freeze()
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
                    streak = self._failed_streak.get(url, 0)
                    self._failed_streak[url] = streak + 1
                    if streak % 10 == 0:  # every tenth failure explains what to check; the rest are short
                        log.warning("%s", explain_connect_error(url, e, self.cfg.evidence_topic))
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
        ws, ack, early = await open_session(url, self.cfg, topics, self.codec)
        self.ack = ack
        self._acked = True
        self._failed_streak.pop(url, None)
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
        self.sender.labels = False  # full verdicts until this Zeek's package says it takes labels
        try:
            sender = asyncio.create_task(self.sender.run(ws), name="verdict-sender")
            tasks.add(sender)
            ws.after_messages = functools.partial(self.sender.write_now, ws)  # verdicts out as they are made
            reader = None
            if topics:
                self.queue.read_path_writes = True  # and the sender is not woken for each
                reader = asyncio.create_task(self.reader.run(ws, early), name="evidence-reader")
                tasks.add(reader)
            else:  # publish only (the flush after a stop): nothing to read
                ws.on_message = _ignore
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
            self.queue.read_path_writes = False
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


def _ignore(data: bytes) -> None:
    """Messages on a publish-only connection: not subscribed to anything, nothing to do."""


def explain_connect_error(url: str, err: BaseException, evidence_topic: str = "zeek/msewatch/evidence") -> str:
    """One log line that says why a connection to Zeek failed and what to check."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'wss' else 80)}"
    name = type(err).__name__
    text = str(err) or name
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, ConnectionRefusedError) or "Connect call failed" in text or "refused" in text.lower():
        why = (f"nothing listens on {where}. Check that Zeek runs with the msewatch package loaded "
               f"(`@load msewatch` with zkg, or `@load` the folder `msewatch zeek-path` prints), that `MSEWatch::listen` is T on the node "
               f"this bridge connects to (or zeekctl's WebSocket server is on: UseWebSocket=1), and that "
               f"Zeek's WebSocket port (MSEWatch::listen_port, default 27759; zeekctl WebSocketPort) and address "
               f"match zeek.endpoints in the config")
    elif status is not None:
        why = (f"{where} answered HTTP {status}: it is not Zeek's WebSocket API at this path; the URL must end "
               f"in /v1/messages/json (zeek.endpoints)")
    elif isinstance(err, (TimeoutError, asyncio.TimeoutError)):
        why = (f"no answer from {where} within zeek.ack_timeout: a firewall drops the connection, or the "
               f"server is not Zeek (check zeek.endpoints)")
    elif "ssl" in name.lower() or "certificate" in text.lower():
        why = f"TLS failed ({text}): check zeek.tls (ca_file, verify) and whether the endpoint is ws:// or wss://"
    elif "Name or service not known" in text or "getaddrinfo" in text or isinstance(err, socket.gaierror):
        why = f"cannot resolve {parts.hostname!r}: check zeek.endpoints"
    else:
        why = f"{name}: {text} (check zeek.endpoints, and that Zeek loads msewatch and listens there)"
    return f"cannot connect to Zeek at {url}: {why}; retrying with backoff (evidence topic {evidence_topic})"


def shard_tag(shard: str | None) -> str:
    """The shard as a file-name part: "0of4", or "all" without a shard."""
    return shard.replace("/", "of") if shard else "all"


def expand_shard_paths(config: Any) -> Any:
    """`{shard}` in outputs.verdicts_jsonl, state.path and log.file becomes the shard tag ("0of4", "all"),
    so that the bridges of one host can share one config file and never one output file."""
    tag = shard_tag(config.zeek.shard)
    update = {}
    if config.outputs.verdicts_jsonl and "{shard}" in config.outputs.verdicts_jsonl:
        update["outputs"] = config.outputs.model_copy(
            update={"verdicts_jsonl": config.outputs.verdicts_jsonl.replace("{shard}", tag)})
    state = getattr(config, "state", None)
    if state is not None and state.path and "{shard}" in state.path:
        update["state"] = state.model_copy(update={"path": state.path.replace("{shard}", tag)})
    log_file = getattr(config.log, "file", None)
    if log_file and "{shard}" in log_file:
        update["log"] = config.log.model_copy(update={"file": log_file.replace("{shard}", tag)})
    return config.model_copy(update=update) if update else config


def shard_index(shard: str | None) -> int:
    """0 for no shard, i for "i/N"."""
    return int(shard.split("/")[0]) if shard else 0


def effective_metrics_port(metrics_cfg: Any, shard: str | None, flag: int | None = None) -> int:
    """--metrics-port as given; else metrics.port + the shard index (port 0 stays 0), so
    the bridges of one host (one per shard) never collide on one port."""
    if flag is not None:
        return flag
    if metrics_cfg.port == 0:
        return 0
    return metrics_cfg.port + shard_index(shard)


async def run_bridge(
    cfg: ZeekConfig,
    engine: EngineLike,
    metrics_cfg=None,
    install_signals: bool = True,
    metrics: Metrics | None = None,
    on_reopen: Iterable[Callable[[], None]] = (),
    state: Any = None,
    state_interval: float = 30.0,
) -> Metrics:
    """Run the bridge (and the metrics endpoint, if `metrics_cfg` is given) until
    SIGTERM/SIGINT; for `msewatch run`. `state` (a state.StateFile) is saved every
    `state_interval` seconds from the event loop (between two messages) and once more
    after the bridge stopped."""
    metrics = metrics or Metrics(shard=cfg.shard or "all")
    server = MetricsServer(metrics, metrics_cfg) if metrics_cfg is not None else None
    if server is not None:
        await server.start()
    bridge = Bridge(cfg, engine, metrics, freeze_gc=True)
    bridge.on_reopen.extend(on_reopen)
    if install_signals:
        bridge.install_signal_handlers()
    saving = asyncio.Event()
    saver = asyncio.create_task(_save_state_every(state, state_interval, saving)) if state is not None else None
    try:
        await bridge.run()
    finally:
        if saver is not None:
            saving.set()  # let a save in progress finish: two writers of one file never overlap
            await asyncio.gather(saver, return_exceptions=True)
            state.save_sync()  # the engine is idle now: the state at stop
        if server is not None:
            await server.stop()
    return metrics


async def _save_state_every(state: Any, interval: float, stop: asyncio.Event) -> None:
    while True:
        try:
            await asyncio.wait_for(stop.wait(), interval)
            return
        except TimeoutError:
            pass
        await state.save()


def main_run(config: Any, metrics_port: int | None = None, verdict_format: str = "msewatch") -> int:
    """Entry point for `msewatch run --config FILE`: `config` is the main msewatch Config
    with `zeek`, `metrics`, `log` and `outputs` fields. Builds the Engine and runs until
    SIGTERM/SIGINT; SIGHUP reopens the outputs and the log file. Returns the exit code;
    raises RunError (one line) when it cannot start. `verdict_format` is the format of
    outputs.verdicts_jsonl (msewatch or ecs)."""
    from .engine import Engine  # the lead's module; imported late so the bridge has no hard dep
    from .metrics import MetricsPortError, ReopenableFileHandler, setup_logging

    # logrotate may send HUP while we start: never let it kill the process
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    config = expand_shard_paths(config)
    try:
        handler = setup_logging(config.log)
    except OSError as e:
        raise RunError(str(e)) from None
    metrics = Metrics(shard=config.zeek.shard or "all")
    port = effective_metrics_port(config.metrics, config.zeek.shard, metrics_port)
    server = MetricsServer(metrics, config.metrics.model_copy(update={"port": port}))
    try:
        server.start_sync()
    except MetricsPortError as e:
        raise RunError(str(e)) from None
    engine = Engine(config)
    try:
        outputs = VerdictOutputs(engine, config.outputs, config.host.local_nets, metrics, verdict_format)
    except OSError as e:
        server.stop_sync()
        raise RunError(str(e)) from None
    reopeners: list[Callable[[], None]] = [outputs.reopen]
    if isinstance(handler, ReopenableFileHandler):
        reopeners.append(handler.reopen)
    state = None
    state_cfg = getattr(config, "state", None)
    if state_cfg is not None and state_cfg.path:
        from .state import StateFile

        state = StateFile(engine, state_cfg.path, metrics)
        state.restore()  # missing: empty; unusable: one warning, empty
    try:
        asyncio.run(run_bridge(config.zeek, outputs, None, metrics=metrics, on_reopen=reopeners, state=state,
                               state_interval=state_cfg.interval if state is not None else 30.0))
    finally:
        outputs.close()
        server.stop_sync()
    return 0


class RunError(Exception):
    """`msewatch run` cannot start (port in use, output not writable); one line for the user."""


class VerdictOutputs:
    """Wraps the engine: every verdict also goes to the configured outputs (a JSON-lines
    file for EVE annotation, Suricata's dataset over its unix socket). An output that
    fails is logged and counted; it never stops verdicts from reaching Zeek. `reopen()`
    (SIGHUP) closes the JSON-lines file and opens it again by name."""

    def __init__(
        self, engine: Any, cfg: Any, local_nets: list[str], metrics: Metrics | None = None, verdict_format: str = "msewatch"
    ) -> None:
        import ipaddress

        from .ecs import formatter

        self.engine = engine
        self.stats = getattr(engine, "stats", None)  # the engine's counters, for the bridge's metrics
        self._format = formatter(verdict_format)  # verdict dict -> what the JSON-lines file gets
        self.metrics = metrics or Metrics()
        self._path = cfg.verdicts_jsonl
        self._jsonl = self._open(self._path) if self._path else None
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

    @staticmethod
    def _open(path: str):
        try:
            return open(path, "ab")
        except OSError as e:
            raise OSError(f"outputs.verdicts_jsonl {path}: cannot open for appending: {e.strerror}") from None

    @property
    def errors(self) -> int:
        return sum(self.metrics.output_errors.values())

    def process_evidence(self, ev: Any) -> list:
        verdicts = self.engine.process_evidence(ev)
        if self._jsonl is None and self._feedback is None:
            return verdicts
        import orjson

        errors = self.metrics.output_errors
        for v in verdicts:
            d = v.to_dict()
            if self._jsonl is not None:
                try:
                    self._jsonl.write(orjson.dumps(self._format(d)) + b"\n")
                except Exception as e:  # an output must not stop the bridge
                    errors["verdicts_jsonl"] += 1
                    log.error("verdict output %s failed: %s", self._path, e)
            if self._feedback is not None:
                try:
                    self._feedback.on_verdict(d)
                except Exception as e:
                    errors["suricata_dataset"] += 1
                    log.error("Suricata dataset feedback failed: %s", e)
        if self._jsonl is not None:
            try:
                self._jsonl.flush()
            except Exception as e:
                errors["verdicts_jsonl"] += 1
                log.error("verdict output %s failed: %s", self._path, e)
        return verdicts

    def reopen(self) -> None:
        """Close the JSON-lines file (after a flush) and open the path again: after
        logrotate renamed it, the next verdicts go into a new file of that name."""
        if self._path is None:
            return
        old = self._jsonl
        self._jsonl = self._open(self._path)  # open first: if it fails, keep writing the old file
        if old is not None:
            try:
                old.close()
            except OSError as e:
                log.error("closing the rotated %s: %s", self._path, e)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
