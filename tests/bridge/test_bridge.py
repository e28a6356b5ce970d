"""The live bridge against an in-process fake of Zeek's WebSocket server (zeek_fake.py)."""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import random
import shutil
import signal
import ssl
import subprocess
import urllib.request

import pytest

from msewatch.bridge import Bridge, backoff_delay
from msewatch.config_zeek import MetricsConfig, ZeekConfig
from msewatch.evidence import FlowEvidence, FlowKey
from msewatch.metrics import Metrics, MetricsServer
from msewatch.sinks.zeek_ws import AnsweredCache, VerdictQueue
from msewatch.verdict import FlowVerdict, HostVerdict
from msewatch.wire import events, v1

from zeek_fake import ACK_ENDPOINT, ERR_EVENT, ERR_JSON, FakeZeek

EVIDENCE_TOPIC = "zeek/msewatch/evidence"
VERDICT_TOPIC = "zeek/msewatch/verdict"


def evidence(i: int) -> FlowEvidence:
    return FlowEvidence(
        key=FlowKey("tcp", "10.0.0.1", 40000 + i % 20000, "198.51.100.7", 6881),
        uid=f"C{i:017d}",
        community_id="1:x",
        ts=1763778416.0 + i,
        sizes=(68, -68, 1200),
        times=(0.0, 0.01, 0.02),
        bursts=(68, -68, 1200),
        orig_heads=(b"\x13BitTorrent protocol",),
        resp_heads=(b"\x13BitTorrent protocol",),
        orig_pkts=3,
        resp_pkts=2,
        orig_bytes=1268,
        resp_bytes=68,
        duration=0.02,
        handshake=True,
        complete=True,
    )


def evidence_message(i: int, topic: str = EVIDENCE_TOPIC) -> str:
    return v1.encode_event_message(topic, events.evidence_to_event(evidence(i)))


class EchoEngine:
    """One flow verdict per evidence, labelled from nothing: the bridge is under test."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def process_evidence(self, ev: FlowEvidence):
        self.seen.append(ev.uid)
        return [
            FlowVerdict(
                key=ev.key,
                uid=ev.uid,
                community_id=ev.community_id,
                ts=ev.ts,
                label="p2p_likely",
                protocol="bt_plain",
                probability=0.99,
                flow_probability=0.99,
                host_score=0.0,
                decided_at_packet=1,
                decided_at=ev.ts,
                reasons=("bt_handshake=1.00",),
                families=("plaintext_signature",),
            )
        ]


def zeek_cfg(*urls: str, **kw) -> ZeekConfig:
    base = dict(
        endpoints=list(urls),
        reconnect={"initial": 0.05, "max": 0.2, "jitter": 0.2},
        shutdown_timeout=5.0,
        ack_timeout=5.0,
    )
    base.update(kw)
    return ZeekConfig(**base)


def verdict_uids(zeek: FakeZeek) -> list[str]:
    return [ev.args[0] for topic, ev in zeek.received if ev.name == events.VERDICT]


async def wait_until(predicate, timeout: float = 10.0) -> None:
    async def _wait():
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(_wait(), timeout)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


# ----------------------------------------------------------------------------- end to end


def test_bridge_answers_every_evidence_event_with_a_verdict():
    async def scenario():
        zeek = await FakeZeek().start()
        engine = EchoEngine()
        bridge = Bridge(zeek_cfg(zeek.url), engine)
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        assert zeek.subscriptions == [[EVIDENCE_TOPIC]]
        assert zeek.app_names == ["msewatch"]
        await wait_until(lambda: bridge.ack is not None)
        assert (bridge.ack.endpoint, bridge.ack.version) == (ACK_ENDPOINT, "8.0.10")
        n = 300
        for i in range(n):
            await zeek.publish(EVIDENCE_TOPIC, evidence_message(i))
        await zeek.wait_for(lambda: len(zeek.received) >= n)
        bridge.stop()
        await task
        await zeek.terminate()
        return zeek, bridge, engine, n

    zeek, bridge, engine, n = run(scenario())
    assert verdict_uids(zeek) == [f"C{i:017d}" for i in range(n)]  # all, once, in order
    assert {t for t, _ in zeek.received} == {VERDICT_TOPIC}
    assert zeek.errors_sent == []  # Zeek accepted every verdict's argument types
    m = bridge.metrics
    assert (m.evidence_received_total, m.verdicts_sent_total, m.queue_depth) == (n, n, 0)
    assert (m.decode_errors_total, m.server_errors_total, m.verdicts_dropped_total, m.reconnects_total) == (0, 0, 0, 0)
    first = zeek.received[0][1]
    assert first.args[5:8] == ("p2p_likely", "bt_plain", 0.99)


def test_malformed_messages_and_server_errors_are_counted_not_fatal():
    async def scenario():
        zeek = await FakeZeek().start()
        bridge = Bridge(zeek_cfg(zeek.url), EchoEngine())
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        await zeek.send_raw("How is it going?")  # not JSON
        await zeek.send_raw('{"type":"error","code":"deserialization_failed","context":"failed to create Zeek event"}')
        bad = evidence_message(1).replace('"data":2},{"@data-type":"string","data":"C', '"data":-3},{"@data-type":"string","data":"C', 1)
        assert bad != evidence_message(1)
        await zeek.send_raw(bad)  # version count -3
        await zeek.publish(EVIDENCE_TOPIC, v1.encode_event_message(EVIDENCE_TOPIC, v1.Event("Other::event", ())))
        await zeek.publish(EVIDENCE_TOPIC, evidence_message(2))
        await zeek.wait_for(lambda: len(zeek.received) >= 1)
        bridge.stop()
        await task
        await zeek.terminate()
        return zeek, bridge

    zeek, bridge = run(scenario())
    assert verdict_uids(zeek) == [f"C{2:017d}"]
    m = bridge.metrics
    assert (m.decode_errors_total, m.server_errors_total, m.evidence_received_total) == (2, 1, 1)


def test_zeek_restart_loses_no_verdict():
    """Verdicts written to a Zeek that dies before reading them are sent again to the
    restarted Zeek (same port): every verdict arrives at least once."""

    async def scenario():
        zeek1 = await FakeZeek(read=False).start()  # a stalled Zeek: reads nothing
        port = zeek1.port
        bridge = Bridge(zeek_cfg(zeek1.url), EchoEngine())
        task = asyncio.create_task(bridge.run())
        await zeek1.wait_connected()
        n = 200
        for i in range(n):
            await zeek1.publish(EVIDENCE_TOPIC, evidence_message(i))
        await wait_until(lambda: bridge.metrics.evidence_received_total == n)
        await asyncio.sleep(0.2)  # the sender has written its batch and waits for the pong
        unconfirmed = len(bridge.queue)
        await zeek1.terminate()  # close 1001 "Terminating", stop listening
        await asyncio.sleep(0.3)  # a few reconnect attempts fail while Zeek is down
        zeek2 = await FakeZeek(port=port).start()
        await zeek2.wait_connected()
        m = 50
        for i in range(n, n + m):
            await zeek2.publish(EVIDENCE_TOPIC, evidence_message(i))
        want = {f"C{i:017d}" for i in range(n + m)}
        await zeek2.wait_for(lambda: want <= set(verdict_uids(zeek2)))
        bridge.stop()
        await task
        await zeek2.terminate()
        return zeek1, zeek2, bridge, n, m, unconfirmed

    zeek1, zeek2, bridge, n, m, unconfirmed = run(scenario())
    assert unconfirmed == n  # nothing was confirmed by the stalled Zeek ...
    assert zeek1.received == []  # ... which indeed processed nothing
    got = verdict_uids(zeek2)
    assert set(got) == {f"C{i:017d}" for i in range(n + m)}  # ... and nothing was lost
    assert bridge.metrics.reconnects_total >= 1
    assert bridge.metrics.verdicts_dropped_total == 0 and len(bridge.queue) == 0


def test_sigterm_flushes_queued_verdicts_before_exit():
    async def scenario():
        zeek = await FakeZeek(read=False).start()
        bridge = Bridge(zeek_cfg(zeek.url, shutdown_timeout=10.0), EchoEngine())
        task = asyncio.create_task(bridge.run())
        bridge.install_signal_handlers()
        await zeek.wait_connected()
        n = 100
        for i in range(n):
            await zeek.publish(EVIDENCE_TOPIC, evidence_message(i))
        await wait_until(lambda: bridge.metrics.evidence_received_total == n)
        assert len(bridge.queue) == n
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.3)
        still_running = not task.done()  # flushing, not exiting
        zeek.reading.set()  # Zeek catches up
        await asyncio.wait_for(task, 10)
        await zeek.terminate()
        return zeek, bridge, n, still_running

    zeek, bridge, n, still_running = run(scenario())
    assert still_running
    assert verdict_uids(zeek) == [f"C{i:017d}" for i in range(n)]
    assert len(bridge.queue) == 0


def test_sigterm_while_zeek_is_down_reconnects_publish_only_to_flush():
    async def scenario():
        zeek1 = await FakeZeek(read=False).start()
        port = zeek1.port
        bridge = Bridge(zeek_cfg(zeek1.url, shutdown_timeout=10.0), EchoEngine())
        task = asyncio.create_task(bridge.run())
        await zeek1.wait_connected()
        for i in range(20):
            await zeek1.publish(EVIDENCE_TOPIC, evidence_message(i))
        await wait_until(lambda: bridge.metrics.evidence_received_total == 20)
        await zeek1.terminate()
        bridge.stop()
        await asyncio.sleep(0.2)
        zeek2 = await FakeZeek(port=port).start()
        await asyncio.wait_for(task, 10)
        await zeek2.terminate()
        return zeek2, bridge

    zeek2, bridge = run(scenario())
    assert zeek2.subscriptions == [[]]  # draining: publish only, no new evidence
    assert set(verdict_uids(zeek2)) == {f"C{i:017d}" for i in range(20)}
    assert len(bridge.queue) == 0


def test_shutdown_timeout_bounds_the_flush(caplog):
    async def scenario():
        zeek = await FakeZeek(read=False).start()  # never catches up
        bridge = Bridge(zeek_cfg(zeek.url, shutdown_timeout=0.5), EchoEngine())
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        for i in range(10):
            await zeek.publish(EVIDENCE_TOPIC, evidence_message(i))
        await wait_until(lambda: bridge.metrics.evidence_received_total == 10)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        bridge.stop()
        await asyncio.wait_for(task, 5)
        elapsed = loop.time() - t0
        await zeek.terminate()
        return bridge, elapsed

    with caplog.at_level(logging.ERROR, logger="msewatch.bridge"):
        bridge, elapsed = run(scenario())
    assert 0.4 <= elapsed < 1.5  # the flush budget, not budget + a close handshake
    assert len(bridge.queue) == 10
    assert "10 verdict(s) unsent" in caplog.text


def test_failover_to_the_next_endpoint():
    async def scenario():
        zeek = await FakeZeek().start()
        dead = FakeZeek()
        await dead.start()
        dead_url = dead.url
        await dead.terminate()  # nothing listens there now
        bridge = Bridge(zeek_cfg(dead_url, zeek.url), EchoEngine())
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        await zeek.publish(EVIDENCE_TOPIC, evidence_message(7))
        await zeek.wait_for(lambda: len(zeek.received) >= 1)
        bridge.stop()
        await task
        await zeek.terminate()
        return bridge

    bridge = run(scenario())
    assert bridge.metrics.reconnects_total >= 1


def test_shard_subscribes_to_its_shard_topic():
    async def scenario():
        zeek = await FakeZeek().start()
        bridge = Bridge(zeek_cfg(zeek.url, shard="1/4"), EchoEngine())
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        await zeek.publish("zeek/msewatch/evidence/1/", evidence_message(1, "zeek/msewatch/evidence/1/"))
        await zeek.wait_for(lambda: len(zeek.received) >= 1)
        bridge.stop()
        await task
        await zeek.terminate()
        return zeek

    zeek = run(scenario())
    assert zeek.subscriptions == [["zeek/msewatch/evidence/1/"]]


def test_fake_zeek_replies_errors_as_zeek_does():
    """The fake's own error behaviour (PROTOCOL-FACTS §8), seen through a plain client."""
    from websockets.asyncio.client import connect

    async def scenario():
        zeek = await FakeZeek().start()
        async with connect(zeek.url, additional_headers={"X-Application-Name": "probe"}) as ws:
            await ws.send("[]")
            ack = v1.decode_message(await ws.recv())
            await ws.send("How is it going?")
            e1 = v1.decode_message(await ws.recv())
            await ws.send(v1.encode_event_message(VERDICT_TOPIC, v1.Event("MSEWatch::verdict", ("only one arg",))))
            e2 = v1.decode_message(await ws.recv())
        await zeek.terminate()
        return ack, e1, e2, zeek

    ack, e1, e2, zeek = run(scenario())
    assert ack == v1.Ack(ACK_ENDPOINT, "8.0.10")
    assert e1 == v1.ErrorMessage("deserialization_failed", ERR_JSON)
    assert e2 == v1.ErrorMessage("deserialization_failed", ERR_EVENT)
    assert zeek.app_names == ["probe"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_wss_with_ca_file_and_with_verify_off(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)

    async def scenario(tls):
        from websockets.asyncio.server import serve

        zeek = FakeZeek()
        zeek.server = await serve(zeek._handler, "127.0.0.1", 0, ssl=server_ctx, compression=None)
        zeek.port = zeek.server.sockets[0].getsockname()[1]
        url = f"wss://127.0.0.1:{zeek.port}/v1/messages/json"
        bridge = Bridge(zeek_cfg(url, tls=tls), EchoEngine())
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        await zeek.publish(EVIDENCE_TOPIC, evidence_message(3))
        await zeek.wait_for(lambda: len(zeek.received) >= 1)
        bridge.stop()
        await task
        await zeek.terminate()
        return zeek

    assert verdict_uids(run(scenario({"ca_file": str(cert)}))) == [f"C{3:017d}"]
    assert verdict_uids(run(scenario({"verify": False}))) == [f"C{3:017d}"]


# ----------------------------------------------------------------------------- parts


def test_full_queue_drops_new_verdicts_counts_and_logs(caplog):
    m = Metrics()
    q = VerdictQueue(3, m)
    with caplog.at_level(logging.ERROR, logger="msewatch.sinks.zeek_ws"):
        results = [q.put(f"u{i}", f"msg{i}") for i in range(5)]
    assert results == [True, True, True, False, False]
    assert (m.verdicts_dropped_total, m.queue_depth, len(q)) == (2, 3, 3)
    assert "DROPPED" in caplog.text
    assert [e[0] for e in q.peek(10)] == ["u0", "u1", "u2"]  # the oldest are kept, in order
    q.confirm(2)
    assert (m.queue_depth, [e[0] for e in q.peek(10)]) == (1, ["u2"])


def test_backoff_grows_exponentially_with_bounded_jitter():
    rng = random.Random(1)
    delays = [backoff_delay(a, 0.5, 30.0, 0.2, rng) for a in range(12)]
    for a, d in enumerate(delays):
        base = min(30.0, 0.5 * 2**a)
        assert base * 0.8 <= d <= base * 1.2
    assert max(delays) <= 36.0
    assert backoff_delay(10_000, 0.5, 30.0, 0.0, rng) == 30.0


def test_metrics_endpoint_serves_prometheus_text():
    from prometheus_client.parser import text_string_to_metric_families

    async def scenario():
        m = Metrics(evidence_received_total=5, verdicts_dropped_total=2)
        server = MetricsServer(m, MetricsConfig(port=0))
        await server.start()
        url = f"http://127.0.0.1:{server.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        await server.stop()
        return body

    body = run(scenario())
    assert "# TYPE msewatch_evidence_received_total counter" in body
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for fam in text_string_to_metric_families(body) for s in fam.samples}
    assert values[("msewatch_evidence_received_total", (("shard", "all"),))] == 5
    assert values[("msewatch_verdicts_dropped_total", (("shard", "all"),))] == 2
    names = {name for name, _ in values}
    for name in ("verdicts_sent_total", "queue_depth", "reconnects_total", "decode_errors_total", "server_errors_total"):
        assert f"msewatch_{name}" in names


# ----------------------------------------------------------------------------- real engine

PCAPS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "data", "corpus", "*.pcap")))


@pytest.mark.skipif(not PCAPS, reason="no pcaps in tests/data/corpus")
def test_end_to_end_with_the_real_engine_on_real_pcaps():
    """Evidence from real captures, replayed as Zeek would publish it, gets exactly the
    verdicts the engine gives the same evidence offline, byte for byte on the wire."""
    engine_mod = pytest.importorskip("msewatch.engine")
    config_mod = pytest.importorskip("msewatch.config")
    cfg = config_mod.Config()
    evs = list(engine_mod.extract_evidence(PCAPS, cfg))
    assert evs, "the corpus produced no evidence"
    codec = v1.Codec()
    # the offline answer: a fresh engine, the evidence as it comes off the wire
    offline = engine_mod.Engine(cfg)
    wire_evs = [events.evidence_from_event(v1.decode_event_message(evidence_text)[1])
                for evidence_text in (v1.encode_event_message(EVIDENCE_TOPIC, events.evidence_to_event(e)) for e in evs)]
    expected = [events.encode_verdict(v, VERDICT_TOPIC, codec) for e in wire_evs for v in offline.process_evidence(e)]

    async def scenario():
        zeek = await FakeZeek().start()
        bridge = Bridge(zeek_cfg(zeek.url), engine_mod.Engine(cfg))
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        for e in evs:
            await zeek.publish(EVIDENCE_TOPIC, v1.encode_event_message(EVIDENCE_TOPIC, events.evidence_to_event(e)))
        await zeek.wait_for(lambda: len(zeek.received) >= len(expected))
        bridge.stop()
        await task
        await zeek.terminate()
        return zeek, bridge

    zeek, bridge = run(scenario())
    got = [v1.encode_event_message(t, ev) for t, ev in zeek.received]
    assert got == expected
    assert bridge.metrics.evidence_received_total == len(evs)
    flow_uids = {ev.args[0] for _, ev in zeek.received if ev.name == events.VERDICT}
    assert flow_uids == {e.uid for e in evs}


# ----------------------------------------------------------------------------- repeats


class FlowAndHostEngine(EchoEngine):
    """A flow verdict and a host verdict per evidence, with a per-host flow count that a
    second decision of the same flow would change (as the real engine's host state)."""

    def __init__(self) -> None:
        super().__init__()
        self.flows_per_host: dict[str, int] = {}

    def process_evidence(self, ev: FlowEvidence):
        (flow,) = super().process_evidence(ev)
        n = self.flows_per_host[ev.key.orig_h] = self.flows_per_host.get(ev.key.orig_h, 0) + 1
        host = HostVerdict(ev.key.orig_h, ev.ts, "p2p_host", float(n), 0.9, (f"flows={n}",))
        return [flow, host]


def test_repeated_evidence_is_answered_from_the_cache_without_deciding_again():
    """Zeek re-sends unanswered evidence when a bridge (re)subscribes: the same uid gets
    the same verdicts again (Zeek logs one), and the engine sees each flow once."""

    async def scenario():
        zeek = await FakeZeek().start()
        engine = FlowAndHostEngine()
        bridge = Bridge(zeek_cfg(zeek.url), engine)
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        for i in (0, 1, 0, 2, 1):
            await zeek.publish(EVIDENCE_TOPIC, evidence_message(i))
        await zeek.wait_for(lambda: len(zeek.received) >= 10)
        bridge.stop()
        await task
        await zeek.terminate()
        return zeek, bridge, engine

    zeek, bridge, engine = run(scenario())
    assert engine.seen == [f"C{i:017d}" for i in (0, 1, 2)]  # decided once each
    assert verdict_uids(zeek) == [f"C{i:017d}" for i in (0, 1, 0, 2, 1)]  # answered every time
    hosts = [ev.args[4] for _, ev in zeek.received if ev.name == events.HOST_VERDICT]
    assert hosts == [["flows=1"], ["flows=2"], ["flows=1"], ["flows=3"], ["flows=2"]]  # same answer again
    assert bridge.metrics.evidence_repeated_total == 2
    assert bridge.metrics.evidence_received_total == 5


def test_repeated_evidence_with_one_flow_verdict_is_answered_from_its_message_alone():
    """The common case (one flow verdict per evidence) is remembered as the encoded message
    alone - bytes, nothing for the garbage collector to walk - and answered the same."""

    async def scenario():
        zeek = await FakeZeek().start()
        engine = EchoEngine()
        bridge = Bridge(zeek_cfg(zeek.url), engine)
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        for i in (0, 1, 0):
            await zeek.publish(EVIDENCE_TOPIC, evidence_message(i))
        await zeek.wait_for(lambda: len(zeek.received) >= 3)
        cached = bridge.answered.get(f"C{0:017d}")
        bridge.stop()
        await task
        await zeek.terminate()
        return zeek, bridge, engine, cached

    zeek, bridge, engine, cached = run(scenario())
    assert engine.seen == [f"C{i:017d}" for i in (0, 1)]
    assert verdict_uids(zeek) == [f"C{i:017d}" for i in (0, 1, 0)]
    assert zeek.received[0][1] == zeek.received[2][1]  # the same verdict again
    assert type(cached) is bytes
    assert bridge.metrics.evidence_repeated_total == 1


def test_answered_cache_is_a_bounded_lru():
    cache = AnsweredCache(2)
    cache.put("a", (("a", "A"),))
    cache.put("b", (("b", "B"),))
    assert cache.get("a") == (("a", "A"),)  # a is now the most recent
    cache.put("c", (("c", "C"),))
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2
    off = AnsweredCache(0)
    off.put("a", (("a", "A"),))
    assert off.get("a") is None and len(off) == 0


def test_answered_cache_keeps_the_most_recent_uids_within_its_bound():
    cache = AnsweredCache(100)  # 8 segments of 12 uids
    for i in range(1000):
        assert cache.get(f"u{i}") is None
        cache.put(f"u{i}", b"m%d" % i)
        assert len(cache) <= 100
    assert len(cache) >= 100 - 100 // 8
    assert all(cache.get(f"u{i}") == b"m%d" % i for i in range(1000 - 84, 1000))
    assert cache.get("u0") is None and cache.get("u800") is None
    assert cache.get("u920") == b"m920"  # a hit in an old segment becomes the newest:
    for i in range(1000, 1080):
        cache.put(f"u{i}", b"")
    assert cache.get("u920") == b"m920" and cache.get("u921") is None


def test_answered_cache_keeps_labels_apart_and_frees_a_retired_segment_a_little_per_put():
    """A flow's one message and its conn.log label come back as (message, label), and are kept
    as bytes and str (nothing the garbage collector walks). A segment dropped from the cache
    is gone for get() at once and freed FREE_PER_PUT entries per put, not in one pause."""
    import gc

    cache = AnsweredCache(80)  # 8 segments of 10 uids
    for i in range(80):
        cache.put(f"u{i}", b"m%d" % i, f"normal_likely:tls{i}" if i % 2 else None)
    assert cache.get("u73") == (b"m73", "normal_likely:tls73") and cache.get("u74") == b"m74"
    assert not any(gc.is_tracked(v) for seg in cache._segments for v in seg.values())
    assert not cache._retired
    cache.put("u80", b"m80")  # the newest segment is full: a new one, and the oldest is dropped
    assert cache.get("u0") is None and cache.get("u1") is None  # dropped: not answered any more
    for i in range(81, 91):
        cache.put(f"u{i}", b"m%d" % i)  # the next segment: the second oldest is dropped
    left = [sum(len(d) for d, _ in cache._retired)]
    for i in range(91, 100):
        cache.put(f"u{i}", b"m%d" % i)
        left.append(sum(len(d) for d, _ in cache._retired))
    assert all(a - b <= AnsweredCache.FREE_PER_PUT for a, b in zip(left, left[1:]))  # a little per put
    assert left[-1] == 0 and not cache._retired  # and all of it within half a segment's puts
    assert cache.get("u21") == (b"m21", "normal_likely:tls21")  # a hit in an old segment keeps its label
    assert cache.get("u21") == (b"m21", "normal_likely:tls21") and "u21" in cache._segments[-1]
    # the one-byte first look counts every entry held (and not yet freed), and only those
    held = [0] * len(cache.seen)
    for seg in cache._segments + [d for d, counted in cache._retired if counted]:
        for uid in seg:
            held[hash(uid) & cache.mask] += 1
    assert held == list(cache.seen)
    cache.put("u21", b"again")  # answered again without a label: the old label goes too
    assert cache.get("u21") == b"again"
    for i in range(100, 200):
        cache.put(f"u{i}", b"")
    freeing = sum(len(d) for d, counted in cache._retired if counted)
    assert sum(cache.seen) == len(cache) + freeing and freeing <= 10  # every freed entry uncounted


# ----------------------------------------------------------------------------- evidence beyond the budget


def test_evidence_with_200000_packets_is_cut_to_the_budget_while_metrics_keep_answering():
    """Issue 11 item 1: one valid flow_evidence message with 200,000 packets (what the 16 MiB
    frame limit allows) used to stall the bridge for hours in decide(). The engine cuts it
    to the budget at its entry and counts it; its work is that of any budget-sized flow
    (detector runs <= max_bursts + 2), the verdict comes back, and the metrics endpoint
    answers throughout."""
    import re
    import threading

    from msewatch.config import Config
    from msewatch.engine import Engine

    n = 200_000
    big = FlowEvidence(
        key=FlowKey("tcp", "10.0.0.1", 40000, "198.51.100.7", 6881),
        uid="Cbig0000000000000", community_id="1:x", ts=1763778416.0,
        sizes=tuple(1 if i % 2 == 0 else -1 for i in range(n)), times=(0.0,) * n, bursts=(),
        orig_heads=(b"\x13BitTorrent protocol",), resp_heads=(b"\x13BitTorrent protocol",),
        orig_pkts=n // 2, resp_pkts=n // 2, handshake=True, complete=True,
    )
    # Evidence version 1, whose typed vectors make the largest message per packet (13.8 MiB;
    # version 2 packs the same into under 1 MiB).
    big_message = v1.encode_event_message(EVIDENCE_TOPIC, events.evidence_to_event(big, 1))
    assert len(big_message) < 16 * 1024 * 1024  # a frame the bridge accepts
    cfg = Config()
    engine = Engine(cfg)
    metrics = Metrics()
    scrapes: list[str] = []  # answers to scrapes sent while the big message was in flight
    late: list[str] = []  # answers to scrapes sent after both verdicts were back
    failures: list[str] = []
    published = threading.Event()
    answered = threading.Event()
    done = threading.Event()

    def poll(url: str) -> None:
        while not done.is_set():
            during, after = published.is_set() and not answered.is_set(), answered.is_set()
            try:
                body = urllib.request.urlopen(url, timeout=60).read().decode()
                (late if after else scrapes if during else []).append(body)
            except Exception as e:  # pragma: no cover - what the test is about
                failures.append(repr(e))
            done.wait(0.05)

    async def scenario():
        zeek = await FakeZeek().start()
        server = MetricsServer(metrics, MetricsConfig(port=0))
        await server.start()
        bridge = Bridge(zeek_cfg(zeek.url), engine, metrics)
        task = asyncio.create_task(bridge.run())
        poller = threading.Thread(target=poll, args=(f"http://127.0.0.1:{server.port}/metrics",), daemon=True)
        poller.start()
        await zeek.wait_connected()
        runs_before = engine.stats.detector_runs
        await zeek.publish(EVIDENCE_TOPIC, big_message)
        published.set()
        await zeek.publish(EVIDENCE_TOPIC, evidence_message(1))
        await zeek.wait_for(lambda: len(verdict_uids(zeek)) >= 2, timeout=120)
        runs_big = engine.stats.detector_runs - runs_before
        answered.set()
        await wait_until(lambda: len(late) >= 1, timeout=60)
        done.set()
        await asyncio.to_thread(poller.join, 60)
        bridge.stop()
        await task
        await server.stop()
        await zeek.terminate()
        return zeek, runs_big

    zeek, runs_big = asyncio.run(asyncio.wait_for(scenario(), 300))
    assert verdict_uids(zeek) == [big.uid, f"C{1:017d}"]
    assert engine.stats.evidence_truncated == 1 and metrics.evidence_truncated_total == 1
    # the work done for the big message is bounded by the budget, not by its 200,000 packets
    assert runs_big <= 2 * (cfg.budget.max_bursts + 2)
    assert not failures, failures
    # The compiled decoder reads such a message in milliseconds (tests/wire/test_fast_wire.py
    # bounds its work), so the window between its arrival and its verdict may hold no scrape;
    # the Python decoder takes long enough that scrapes must be answered meanwhile.
    from msewatch import compiled

    assert scrapes or compiled.module("_wire") is not None, "no scrape was answered while the big message was being handled"
    assert re.search(r"^msewatch_evidence_truncated_total(\{[^}]*\})? 1(\.0)?$", late[-1], re.M), late[-1]


# ----------------------------------------------------------------------------- compact labels


HELLO = v1.encode_event_message(EVIDENCE_TOPIC, v1.Event(events.HELLO, (["flow_labels"],)))


class MixedEngine:
    """Flow i: p2p_likely/bt_mse when i % 3 == 0, normal_likely/tls when 1, unknown when 2."""

    LABELS = (("p2p_likely", "bt_mse"), ("normal_likely", "tls"), ("unknown", "unknown"))

    def __init__(self) -> None:
        self.seen: list[str] = []

    def process_evidence(self, ev: FlowEvidence):
        self.seen.append(ev.uid)
        label, protocol = self.LABELS[int(ev.uid[1:]) % 3]
        return [FlowVerdict(key=ev.key, uid=ev.uid, community_id=ev.community_id, ts=ev.ts, label=label,
                            protocol=protocol, probability=0.9, flow_probability=0.9, host_score=0.0,
                            decided_at_packet=1, decided_at=ev.ts, reasons=("x=1",), families=())]


def want_tag(i: int) -> str:
    label, protocol = MixedEngine.LABELS[i % 3]
    return label if protocol == "unknown" else f"{label}:{protocol}"


def received_labels(zeek: FakeZeek) -> list[tuple[str, str]]:
    out = []
    for _, ev in zeek.received:
        if ev.name == events.FLOW_LABELS:
            uids, labels = ev.args[0].split(" "), ev.args[1].split(" ")
            assert len(uids) == len(labels)
            out += zip(uids, labels)
    return out


def test_compact_labels_go_only_to_a_package_that_said_hello():
    """Without the package's hello every verdict goes in full (an older package); after it,
    flows outside full_verdicts go as packed conn.log labels, p2p_likely in full."""

    async def scenario(hello: bool):
        zeek = await FakeZeek().start()
        bridge = Bridge(zeek_cfg(zeek.url), MixedEngine())
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        if hello:
            await zeek.publish(EVIDENCE_TOPIC, HELLO)
        for i in range(30):
            await zeek.publish(EVIDENCE_TOPIC, evidence_message(i))
        await wait_until(lambda: bridge.metrics.verdicts_sent_total == 30)
        bridge.stop()
        await task
        await zeek.terminate()
        return zeek, bridge

    zeek, bridge = run(scenario(False))
    assert sorted(verdict_uids(zeek)) == [f"C{i:017d}" for i in range(30)] and received_labels(zeek) == []
    assert bridge.metrics.labels_sent_total == 0

    zeek, bridge = run(scenario(True))
    assert sorted(verdict_uids(zeek)) == [f"C{i:017d}" for i in range(0, 30, 3)]
    got = received_labels(zeek)
    assert sorted(got) == [(f"C{i:017d}", want_tag(i)) for i in range(30) if i % 3]
    assert sum(ev.name == events.FLOW_LABELS for _, ev in zeek.received) < 5  # batched
    assert (bridge.metrics.verdicts_sent_total, bridge.metrics.labels_sent_total) == (30, 20)
    assert zeek.errors_sent == []


def test_full_verdicts_all_sends_every_verdict_in_full_even_after_hello():
    async def scenario():
        zeek = await FakeZeek().start()
        bridge = Bridge(zeek_cfg(zeek.url, full_verdicts="all"), MixedEngine())
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        await zeek.publish(EVIDENCE_TOPIC, HELLO)
        for i in range(9):
            await zeek.publish(EVIDENCE_TOPIC, evidence_message(i))
        await wait_until(lambda: bridge.metrics.verdicts_sent_total == 9)
        bridge.stop()
        await task
        await zeek.terminate()
        return zeek

    zeek = run(scenario())
    assert sorted(verdict_uids(zeek)) == [f"C{i:017d}" for i in range(9)] and received_labels(zeek) == []


def test_labels_are_queued_cached_and_resent_like_verdicts():
    """Labels written to a Zeek that stalls are sent again to the next one (in full, since
    that one has not said hello), and evidence sent again is answered from the cache."""

    async def scenario():
        zeek1 = await FakeZeek(read=False).start()
        port = zeek1.port
        engine = MixedEngine()
        bridge = Bridge(zeek_cfg(zeek1.url, label_batch=4), engine)
        task = asyncio.create_task(bridge.run())
        await zeek1.wait_connected()
        await zeek1.publish(EVIDENCE_TOPIC, HELLO)
        for i in range(12):
            await zeek1.publish(EVIDENCE_TOPIC, evidence_message(i))
        await wait_until(lambda: bridge.metrics.evidence_received_total == 12)
        await wait_until(lambda: bridge.queue.written == 12)  # all written, none confirmed
        await zeek1.terminate()
        zeek2 = await FakeZeek(port=port).start()
        await zeek2.wait_connected()
        await zeek2.wait_for(lambda: len(zeek2.received) >= 12)
        await zeek2.publish(EVIDENCE_TOPIC, HELLO)
        for i in (1, 2, 3):  # Zeek re-sends evidence it has no answer for
            await zeek2.publish(EVIDENCE_TOPIC, evidence_message(i))
        await wait_until(lambda: bridge.metrics.verdicts_sent_total == 15)
        bridge.stop()
        await task
        await zeek2.terminate()
        return zeek2, bridge, engine

    zeek2, bridge, engine = run(scenario())
    assert len(engine.seen) == 12  # decided once each
    first = zeek2.received[:12]
    assert sorted(ev.args[0] for _, ev in first if ev.name == events.VERDICT) == [f"C{i:017d}" for i in range(12)]
    assert received_labels(zeek2) == [(f"C{i:017d}", want_tag(i)) for i in (1, 2)]  # 3 is p2p_likely
    assert bridge.metrics.evidence_repeated_total == 3 and len(bridge.queue) == 0


def test_label_delay_holds_labels_until_the_batch_fills_or_the_delay_ends():
    async def scenario():
        q = VerdictQueue(100, Metrics(), label_batch=3, label_delay=0.2)
        q.hold_labels = True
        q.put("a", "A", "normal_likely")
        q.put("b", "B", "unknown")
        held = not q._unwritten.is_set()
        q.put("f", "F", None)  # a full verdict is due at once, without the held labels
        full_alone = q.take_unwritten(10)
        q.put("c", "C", "unknown")  # the batch is full
        batch = q.take_unwritten(10)
        q.put("d", "D", "unknown")
        early = q._unwritten.is_set()
        await asyncio.sleep(0.3)  # the delay ends
        late = q.take_unwritten(10)
        q.confirm(*full_alone[1])
        q.confirm(*batch[1])
        q.confirm(*late[1])
        return held, full_alone, [e[0] for e in batch[0]], early, [e[0] for e in late[0]], len(q)

    held, full_alone, batch, early, late, left = run(scenario())
    assert held and full_alone == ([("f", "F", None)], (1, 0))
    assert batch == ["a", "b", "c"] and not early and late == ["d"] and left == 0
    

def test_packed_labels_and_config():
    v = MixedEngine().process_evidence(evidence(1))[0]
    assert events.conn_label(v) == "normal_likely:tls"
    assert not events.packable("C1", "a b") and not events.packable("", "x") and events.packable("C1", "unknown")
    msg = v1.decode_message(events.encode_flow_labels(["C1", "C2"], ["unknown", "normal_likely:tls"], VERDICT_TOPIC))
    ev = v1.event_from_value(msg.value)
    assert (msg.topic, ev.name, ev.args) == (VERDICT_TOPIC, events.FLOW_LABELS, ("C1 C2", "unknown normal_likely:tls"))
    assert ZeekConfig().full_verdicts == ["p2p_likely"]
    assert ZeekConfig(full_verdicts="all").full_verdicts == ["p2p_likely", "normal_likely", "unknown"]
    for bad in (["p2p_host"], ["unknown", "unknown"], "some"):
        with pytest.raises(ValueError):
            ZeekConfig(full_verdicts=bad)
    with pytest.raises(ValueError):
        ZeekConfig(label_delay=5)


# ----------------------------------------------------------------------------- the fused read path


def _state(bridge: Bridge) -> dict:
    """What handling messages leaves behind: the queue in order, the answered cache, the counters."""
    q, m, a = bridge.queue, bridge.metrics, bridge.answered
    return {
        "items": list(q._items), "labels": list(q._labels),
        "answered": {uid: a.get(uid) for seg in a._segments for uid in list(seg)},
        "counters": (m.evidence_received_total, m.evidence_repeated_total, m.engine_errors_total,
                     m.decode_errors_total if hasattr(m, "decode_errors_total") else None,
                     m.server_errors_total, m.evidence_truncated_total, m.verdicts_unencodable_total),
        "verdicts": dict(m.verdicts), "histogram": sum(m.latency_counts),
    }


@pytest.mark.parametrize("hold_labels,cache", [(False, 10_000), (True, 10_000), (False, 40)])
def test_the_fused_message_handler_leaves_what_the_general_path_leaves(hold_labels, cache):
    """Bridge.message_handler (the read path's one function for the common message) against
    EvidenceReader.handle_timed -> Bridge._on_evidence: real evidence of the corpus through
    the real engine, with uids repeated (answered from the cache), host verdicts, a hello,
    a server error and a malformed message among them; the queue (entries, order, labels),
    the answered cache and every counter end up the same."""
    engine_mod = pytest.importorskip("msewatch.engine")
    config_mod = pytest.importorskip("msewatch.config")
    cfg = config_mod.Config()
    evs = list(engine_mod.extract_evidence(PCAPS, cfg))
    assert len(evs) > 20
    raw = [v1.encode_event_message(EVIDENCE_TOPIC, events.evidence_to_event(e)).encode() for e in evs]
    raw[5:5] = [b'{"type":"error","code":"deserialization_failed","context":"x"}', b"{not json",
                v1.encode_event_message(EVIDENCE_TOPIC, v1.Event(events.HELLO, [["flow_labels"]])).encode()]
    raw += raw[:15] + raw[-3:]  # Zeek sends evidence again: answered from the cache

    async def handle(fast: bool) -> dict:
        bridge = Bridge(zeek_cfg("ws://127.0.0.1:1/v1/messages/json", answered_cache=cache),
                        engine_mod.Engine(cfg))
        bridge.queue.hold_labels = hold_labels
        handler = bridge.message_handler() if fast else None
        if fast:
            assert handler is not None, "the compiled codec is not built"
        else:
            from msewatch.wire.events import _compiled_codec

            bridge.reader._decode_c = _compiled_codec(bridge.codec)[0].decode
            handler = bridge.reader.handle_timed
        for r in raw:
            handler(r)
        state = _state(bridge)
        bridge.queue.release_labels()
        return state

    if events._compiled_codec(v1.Codec()) is None:
        pytest.skip("msewatch._wire is not built")
    fast, general = run(handle(True)), run(handle(False))
    assert fast == general
    assert fast["counters"][1] == (15 if cache > len(raw) else 3)  # the repeats (an evicted uid is decided again)
    assert fast["items"] or fast["labels"]
    assert len(fast["answered"]) <= cache
