"""`msewatch run` as a service runs it: a real process against the fake Zeek, with the
signals systemd and logrotate send. SIGHUP (logrotate's postrotate) reopens the verdict
file and the log file without losing or duplicating a verdict; SIGTERM flushes and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from test_bridge import EVIDENCE_TOPIC, evidence_message
from zeek_fake import FakeZeek

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"


def flow_uids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [v["uid"] for v in map(json.loads, path.read_text().splitlines()) if v["type"] == "flow"]


async def wait_until(predicate, timeout: float = 60.0, what: str = "") -> None:
    async def _wait():
        while not predicate():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(_wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def test_sighup_reopens_verdicts_and_log_file_without_losing_a_verdict(tmp_path):
    out, log = tmp_path / "verdicts.jsonl", tmp_path / "bridge.log"
    rotated_out, rotated_log = tmp_path / "verdicts.jsonl.1", tmp_path / "bridge.log.1"

    async def scenario():
        zeek = await FakeZeek().start()
        cfg = {
            "zeek": {"endpoints": [zeek.url], "reconnect": {"initial": 0.05, "max": 0.5}, "shutdown_timeout": 20},
            "metrics": {"port": 0},
            "log": {"file": str(log)},
            "outputs": {"verdicts_jsonl": str(out)},
        }
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
        env = dict(os.environ, PYTHONPATH=str(BRIDGE))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "msewatch", "run", "-c", str(tmp_path / "run.yaml"),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            await zeek.wait_connected(timeout=120)
            sent: list[str] = []

            async def publish(lo: int, hi: int) -> None:
                for i in range(lo, hi):
                    await zeek.publish(EVIDENCE_TOPIC, evidence_message(i))
                    sent.append(f"C{i:017d}")

            def zeek_flow_uids() -> set[str]:
                return {ev.args[0] for _, ev in zeek.received if ev.name == "MSEWatch::verdict"}

            await publish(0, 40)
            await wait_until(lambda: len(zeek_flow_uids()) >= 40, what="the first 40 verdicts at Zeek")
            # logrotate: rename, then HUP; verdicts keep flowing while the signal is handled
            os.rename(out, rotated_out)
            os.rename(log, rotated_log)
            proc.send_signal(signal.SIGHUP)
            await publish(40, 80)
            await wait_until(out.exists, what="the reopened verdict file")
            await publish(80, 120)
            await wait_until(lambda: len(zeek_flow_uids()) >= 120, what="all 120 verdicts at Zeek")
            await wait_until(lambda: len(flow_uids(rotated_out)) + len(flow_uids(out)) >= 120, what="all verdicts on disk")
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await zeek.terminate()
        stderr = (await proc.stderr.read()).decode()
        return rc, sent, stderr

    rc, sent, stderr = asyncio.run(scenario())
    assert rc == 0, stderr
    old, new = flow_uids(rotated_out), flow_uids(out)
    assert old + new == sent  # none lost, none twice, in order across the two files
    assert len(old) >= 40 and new[-40:] == sent[-40:]  # the new file took the later ones
    assert "SIGHUP: output and log files reopened" in log.read_text()
    assert "connected to" in rotated_log.read_text() and "SIGHUP" not in rotated_log.read_text()
    assert stderr == ""  # with log.file set, nothing goes to stderr


def test_sighup_without_file_outputs_keeps_the_bridge_running(tmp_path):
    """Before this, SIGHUP's default action silently killed `msewatch run`."""

    async def scenario():
        zeek = await FakeZeek().start()
        (tmp_path / "run.yaml").write_text(yaml.safe_dump({"zeek": {"endpoints": [zeek.url]}, "metrics": {"port": 0}}))
        env = dict(os.environ, PYTHONPATH=str(BRIDGE))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "msewatch", "run", "-c", str(tmp_path / "run.yaml"),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            await zeek.wait_connected(timeout=120)
            for _ in range(3):
                proc.send_signal(signal.SIGHUP)
                await asyncio.sleep(0.1)
            await zeek.publish(EVIDENCE_TOPIC, evidence_message(1))
            await zeek.wait_for(lambda: len(zeek.received) >= 1, timeout=60)
            alive = proc.returncode is None
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await zeek.terminate()
        return alive, rc, (await proc.stderr.read()).decode()

    alive, rc, stderr = asyncio.run(scenario())
    assert alive and rc == 0, stderr
    assert stderr.count("SIGHUP: output and log files reopened") == 3


def _two_free_ports() -> int:
    """A port P with P+1 free as well (the base port of two shards)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            p = a.getsockname()[1]
            if p >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", p + 1))
                except OSError:
                    continue
                return p
    raise RuntimeError("no two consecutive free ports")


def test_two_shards_on_one_host_serve_metrics_on_base_port_plus_index(tmp_path):
    async def scenario():
        zeek = await FakeZeek().start()
        base = _two_free_ports()
        (tmp_path / "run.yaml").write_text(yaml.safe_dump({"zeek": {"endpoints": [zeek.url]}, "metrics": {"port": base}}))
        env = dict(os.environ, PYTHONPATH=str(BRIDGE))
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "msewatch", "run", "-c", str(tmp_path / "run.yaml"), "--shard", shard,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for shard in ("0/2", "1of2")]
        try:
            await zeek.wait_connected(2, timeout=120)
            bodies = []
            for port in (base, base + 1):
                url = f"http://127.0.0.1:{port}/metrics"
                bodies.append(await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode()))
            for p in procs:
                p.send_signal(signal.SIGTERM)
            rcs = [await asyncio.wait_for(p.wait(), 60) for p in procs]
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()
            await zeek.terminate()
        return zeek.subscriptions, bodies, rcs

    subs, bodies, rcs = asyncio.run(scenario())
    assert rcs == [0, 0]
    assert sorted(subs) == [["zeek/msewatch/evidence/0/"], ["zeek/msewatch/evidence/1/"]]
    for body, shard in zip(bodies, ("0/2", "1/2")):
        info = [s for fam in text_string_to_metric_families(body) for s in fam.samples if s.name == "msewatch_build_info"]
        assert info and info[0].labels["shard"] == shard


def test_run_with_the_metrics_port_taken_exits_1_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "msewatch", "run", "--metrics-port", str(port)],
                             capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(BRIDGE)))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("msewatch: error: cannot serve metrics") and "--metrics-port" in lines[-1], res.stderr
    assert "Traceback" not in res.stderr


def test_run_without_zeek_says_what_to_check(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "zeek": {"endpoints": [f"ws://127.0.0.1:{port}/v1/messages/json"], "reconnect": {"initial": 0.05, "max": 0.1}},
        "metrics": {"enabled": False}}))

    async def scenario():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "msewatch", "run", "-c", str(tmp_path / "run.yaml"),
            env=dict(os.environ, PYTHONPATH=str(BRIDGE)), stderr=asyncio.subprocess.PIPE)
        seen = b""
        try:
            while b"MSEWatch::listen" not in seen:
                line = await asyncio.wait_for(proc.stderr.readline(), 120)
                if not line:
                    break
                seen += line
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return rc, seen.decode()

    rc, text = asyncio.run(scenario())
    assert rc == 0
    hint = next(line for line in text.splitlines() if "cannot connect to Zeek" in line)
    for what in ("@load msewatch", "MSEWatch::listen", f"127.0.0.1:{port}", "27759", "zeek.endpoints"):
        assert what in hint
