"""The bridge's Prometheus metrics: names promtool accepts, labelled verdict and decode-error
counters, the latency histogram, build_info and process metrics, one shard label on every
msewatch series, a one-line error when the port is taken, and per-shard default ports."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from msewatch.bridge import Bridge, effective_metrics_port
from msewatch.config_zeek import MetricsConfig
from msewatch.metrics import Metrics, MetricsPortError, MetricsServer, counter, decode_error_reason
from msewatch.wire import v1

from test_bridge import EVIDENCE_TOPIC, EchoEngine, evidence_message, run, zeek_cfg
from zeek_fake import FakeZeek


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_every_msewatch_series_carries_the_shard_label():
    m = Metrics(shard="1/4")
    got = samples(m.render())
    ours = [(name, labels) for name, labels in got if name.startswith("msewatch_")]
    assert ours and all(("shard", "1/4") in labels for _, labels in ours)


def test_build_info_process_and_python_metrics_are_exported():
    names = {name for name, _ in samples(Metrics().render())}
    assert "msewatch_build_info" in names
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"} <= names


def test_verdicts_are_counted_by_kind_label_and_protocol_through_the_bridge():
    async def scenario():
        zeek = await FakeZeek().start()
        bridge = Bridge(zeek_cfg(zeek.url), EchoEngine(), Metrics(shard="0/2"))
        task = asyncio.create_task(bridge.run())
        await zeek.wait_connected()
        for i in range(7):
            await zeek.publish(EVIDENCE_TOPIC, evidence_message(i))
        await zeek.send_raw("not json")
        await zeek.send_raw(v1.encode_event_message(EVIDENCE_TOPIC, v1.Event("MSEWatch::flow_evidence", ("x",))))
        await zeek.wait_for(lambda: len(zeek.received) >= 7)
        while bridge.metrics.decode_errors_total < 2:
            await asyncio.sleep(0.01)
        bridge.stop()
        await task
        await zeek.terminate()
        return bridge.metrics

    m = run(scenario())
    got = samples(m.render())
    key = ("msewatch_verdicts_total", (("kind", "flow"), ("label", "p2p_likely"), ("protocol", "bt_plain"), ("shard", "0/2")))
    assert got[key] == 7
    assert got[("msewatch_evidence_received_total", (("shard", "0/2"),))] == 7
    assert got[("msewatch_decode_errors_total", (("reason", "json"), ("shard", "0/2")))] == 1
    assert got[("msewatch_decode_errors_total", (("reason", "event"), ("shard", "0/2")))] == 1
    # every evidence message went through the latency histogram
    assert got[("msewatch_message_processing_seconds_count", (("shard", "0/2"),))] >= 7
    assert got[("msewatch_message_processing_seconds_bucket", (("le", "+Inf"), ("shard", "0/2")))] >= 7


def test_host_verdicts_and_null_protocol_get_fixed_label_values():
    m = Metrics()
    m.count_verdict("flow", "unknown", None)
    m.count_verdict("host", "p2p_host", None)
    assert m.verdicts[("flow", "unknown", "unknown")] == 1
    assert m.verdicts[("host", "p2p_host", "")] == 1


def test_latency_histogram_buckets_are_cumulative_and_sum_adds_up():
    m = Metrics()
    for s in (5e-6, 3e-5, 3e-5, 0.2, 5.0):
        m.observe_latency(s)
    got = samples(m.render())

    def bucket(le):
        return got[("msewatch_message_processing_seconds_bucket", (("le", le), ("shard", "all")))]

    assert (bucket("1e-05"), bucket("5e-05"), bucket("1.0"), bucket("+Inf")) == (1, 3, 4, 5)
    assert got[("msewatch_message_processing_seconds_sum", (("shard", "all"),))] == pytest.approx(5.200065)


def test_old_style_decode_error_increments_still_count():
    m = Metrics()
    m.decode_errors_total += 1
    m.count_decode_error("json")
    assert m.decode_errors_total == 2 and m.decode_errors["other"] == 1


def test_decode_error_reasons_are_a_small_fixed_set():
    for raw in ("not json", "[1,2", '{"type":"data-message"}', "{}"):
        try:
            v1.decode_message(raw)
        except v1.WireError as e:
            assert decode_error_reason(e) in ("json", "message", "event", "value", "other")


def test_a_new_plain_counter_is_one_line_and_is_exported():
    @dataclasses.dataclass(eq=False)
    class More(Metrics):
        zeek_deliveries_total: int = counter("verdict deliveries Zeek confirmed")
        bare_total: int = 0

    m = More()
    m.zeek_deliveries_total += 3
    m.bare_total += 2
    got = samples(m.render())
    assert got[("msewatch_zeek_deliveries_total", (("shard", "all"),))] == 3
    assert got[("msewatch_bare_total", (("shard", "all"),))] == 2
    assert "verdict deliveries Zeek confirmed" in m.render()


def test_counters_other_streams_add_are_mapped():
    m = Metrics()
    m.evidence_truncated_total += 1
    m.verdicts_unencodable_total += 1
    got = samples(m.render())
    assert got[("msewatch_evidence_truncated_total", (("shard", "all"),))] == 1
    assert got[("msewatch_verdicts_unencodable_total", (("shard", "all"),))] == 1


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (tools/setup-system.sh installs it as root)")
def test_promtool_accepts_the_exposition():
    m = Metrics(shard="0/2")
    m.count_verdict("flow", "p2p_likely", "bt_mse")
    m.observe_latency(4e-5)
    res = subprocess.run(["promtool", "check", "metrics"], input=m.render(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res.stdout + res.stderr


def test_endpoint_serves_the_registry_over_http():
    m = Metrics(evidence_received_total=3)
    server = MetricsServer(m, MetricsConfig(port=0))
    server.start_sync()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10).read().decode()
    finally:
        server.stop_sync()
    assert samples(body)[("msewatch_evidence_received_total", (("shard", "all"),))] == 3


def test_port_in_use_is_one_line_naming_the_key_and_the_flag():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsPortError) as e:
            MetricsServer(Metrics(), MetricsConfig(port=port)).start_sync()
    msg = str(e.value)
    assert "\n" not in msg and "--metrics-port" in msg and "metrics.port" in msg and str(port) in msg


def test_shards_get_distinct_default_ports_and_the_flag_wins():
    cfg = MetricsConfig(port=9877)
    assert [effective_metrics_port(cfg, f"{i}/4") for i in range(4)] == [9877, 9878, 9879, 9880]
    assert effective_metrics_port(cfg, None) == 9877
    assert effective_metrics_port(cfg, "3/4", flag=9999) == 9999
    assert effective_metrics_port(MetricsConfig(port=0), "3/4") == 0
