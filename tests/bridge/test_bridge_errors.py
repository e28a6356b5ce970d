"""`msewatch run`: a verdict that cannot be encoded is dropped with one log line and a metric;
resources named in the config that fail at start-up are one-line errors naming the key
(issue 11 items 6 and 7; the metrics port in use: tests/bridge/test_metrics.py)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from msewatch.bridge import Bridge, RunError, main_run
from msewatch.config import Config, parse_config
from msewatch.config_zeek import ZeekConfig
from msewatch.engine import Engine
from msewatch.evidence import FlowEvidence, FlowKey
from msewatch.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
END_OF_9999 = 253402300799.0  # 9999-12-31T23:59:59Z: the last second a Broker timestamp can hold


def late_evidence(uid: str) -> FlowEvidence:
    """A plain HTTP flow that starts 100 s into year 10000: whenever the engine decides it, its
    verdict's timestamps are beyond what a Broker timestamp can hold."""
    req = b"GET /index.html HTTP/1.1\r\nHost: example.org\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    return FlowEvidence(
        key=FlowKey("tcp", "10.0.0.1", 40001, "198.51.100.7", 80), uid=uid, community_id="1:x",
        ts=END_OF_9999 + 100, sizes=(len(req), -len(resp), 100, -100, 100), times=(0.0, 1.0, 2.0, 3.0, 4.0),
        bursts=(len(req), -len(resp), 100, -100, 100), orig_heads=(req,), resp_heads=(resp,), orig_pkts=5,
        resp_pkts=3, orig_bytes=300, resp_bytes=300, duration=4.0, handshake=True, complete=True,
    )


def test_unencodable_verdict_is_dropped_with_one_log_line_and_a_metric(caplog):
    metrics = Metrics()
    bridge = Bridge(ZeekConfig(), Engine(Config()), metrics)
    with caplog.at_level(logging.ERROR, logger="msewatch.bridge"):
        bridge._on_evidence(late_evidence("CLATE00000000000001"))
    dropped = metrics.verdicts_unencodable_total
    assert dropped >= 1 and len(bridge.queue) == 0  # the flow verdict (and a host verdict, if any)
    records = [r for r in caplog.records if r.name == "msewatch.bridge"]
    assert len(records) == dropped and all(r.exc_info is None and "\n" not in r.getMessage() for r in records)
    assert "CLATE00000000000001" in records[0].getMessage() and "dropped" in records[0].getMessage()
    assert f'msewatch_verdicts_unencodable_total{{shard="all"}} {float(dropped)}' in metrics.render()


def _run(tmp_path: Path, config: str) -> subprocess.CompletedProcess:
    p = tmp_path / "run.yaml"
    p.write_text(config)
    return subprocess.run([sys.executable, "-m", "msewatch", "run", "-c", str(p)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_metrics_host_name_that_does_not_resolve_is_one_line_error(tmp_path):
    r = _run(tmp_path, "zeek: {endpoints: ['ws://127.0.0.1:9/v1/messages/json']}\n"
                       "metrics: {listen: no-such-host.invalid, port: 0}\n")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("msewatch: error: ")]
    assert len(errors) == 1 and "no-such-host.invalid" in errors[0] and "metrics.port" in errors[0]


def test_verdicts_jsonl_folder_gone_at_start_is_one_line_error(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    cfg = parse_config({"outputs": {"verdicts_jsonl": str(folder / "v.jsonl")}, "metrics": {"port": 0}})
    folder.rmdir()  # checked fine by the config, gone by the time the run opens it
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        with pytest.raises(RunError, match=r"^outputs.verdicts_jsonl .*v.jsonl: cannot open for appending: No such file"):
            main_run(cfg)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
