"""The engine's host state survives a restart (msewatch/state.py): half of a capture's evidence
in one engine, its state exported, a new engine that imports it decides the rest exactly as
one engine deciding everything, with the compiled and with the pure-Python host model. Without
the import the verdicts differ (the check can fail). Unusable state files are refused with one
line, never a traceback, and `msewatch run` restores and saves its state file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from msewatch import state
from msewatch.engine import Engine, extract_evidence
from msewatch.metrics import Metrics

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
BRIDGE = Path(__file__).resolve().parents[2] / "bridge"
CAPTURES = ["mse_rc4_libtorrent_transmission.pcap", "dht_local.pcap", "lsd_local.pcap",
            "mse_plain_aria2_libtorrent.pcap", "https_fanout.pcap"]


@pytest.fixture(params=[False, True], ids=["compiled", "pure-python"])
def model(request, monkeypatch):
    if request.param:
        monkeypatch.setenv("MSEWATCH_PURE_PYTHON", "1")
    else:
        from msewatch import fastdecide

        monkeypatch.delenv("MSEWATCH_PURE_PYTHON", raising=False)
        assert fastdecide.available(), fastdecide.status()  # CI builds it
    kind = "python" if request.param else "compiled"
    assert state.model_kind(Engine()) == kind
    return kind


@pytest.fixture(scope="module")
def evidence() -> dict:
    """Each capture's evidence, and the whole corpus's in one engine, in emission order."""
    out = {name: extract_evidence([CORPUS / name]) for name in CAPTURES}
    out["corpus"] = extract_evidence(sorted(CORPUS.glob("*.pcap")))
    return out


def _decide(engine: Engine, evs) -> list[bytes]:
    out = []
    for ev in evs:
        out.extend(engine.process_evidence(ev))
    return [orjson.dumps(v.to_dict()) for v in out]


def _split_run(evs, cut: int, restore: bool) -> list[bytes]:
    first = Engine()
    lines = _decide(first, evs[:cut])
    data = state.export_state(first)
    second = Engine()
    if restore:
        assert state.import_state(second, data) == len(first.hosts.hosts)
    lines += _decide(second, evs[cut:])
    return lines + [orjson.dumps(v.to_dict()) for v in second.flush()]


def test_restored_engine_decides_as_one_engine(model, evidence):
    differs_without = []
    for name, evs in evidence.items():
        one = Engine()
        whole = _decide(one, evs) + [orjson.dumps(v.to_dict()) for v in one.flush()]
        for cut in (len(evs) // 3, len(evs) // 2, 2 * len(evs) // 3):
            assert _split_run(evs, cut, restore=True) == whole, f"{name}: restored at {cut} of {len(evs)} differs"
        if _split_run(evs, len(evs) // 2, restore=False) != whole:
            differs_without.append(name)
    # the state matters: without it the whole corpus and captures with host context differ
    assert "corpus" in differs_without and len(differs_without) >= 2, differs_without


def test_the_other_models_state_is_refused(evidence, monkeypatch):
    monkeypatch.delenv("MSEWATCH_PURE_PYTHON", raising=False)
    compiled = Engine()
    if state.model_kind(compiled) != "compiled":
        pytest.skip("the compiled host model is not built")
    _decide(compiled, evidence["corpus"])
    data = state.export_state(compiled)
    monkeypatch.setenv("MSEWATCH_PURE_PYTHON", "1")
    pure = Engine()
    with pytest.raises(state.StateError, match="compiled host model"):
        state.import_state(pure, data)
    assert not pure.hosts.hosts and not pure._peer_cache


def _corruptions(data: bytes) -> list[bytes]:
    snap = json.loads(data)
    out = [data[: len(data) // 2], b"\x00" * 40, b"[]", json.dumps({**snap, "version": 99}).encode(),
           json.dumps({**snap, "host_config": {**snap["host_config"], "hll_lg_k": 12}}).encode(),
           json.dumps({**snap, "peer_cache": [["1.2.3.4", "x", 1.0]]}).encode()]
    h = snap["hosts"][0]
    blob_at = 5 if snap["model"] == "compiled" else None
    for bad in ("AAAA", "not base64!", h[blob_at][:-8] if blob_at else "AAAA"):
        hosts = [list(x) for x in snap["hosts"]]
        if blob_at:
            hosts[0][blob_at] = bad
        else:
            hosts[0][8] = [[[0, bad]], [], [], []]
        out.append(json.dumps({**snap, "hosts": hosts}).encode())
    hosts = [list(x) for x in snap["hosts"]]
    hosts[0][3] = "p2p_hostile"
    out.append(json.dumps({**snap, "hosts": hosts}).encode())
    return out


def test_unusable_state_is_refused_and_leaves_the_engine_unchanged(model, evidence):
    eng = Engine()
    _decide(eng, evidence["corpus"])
    data = state.export_state(eng)
    for bad in _corruptions(data):
        fresh = Engine()
        with pytest.raises(state.StateError):
            state.import_state(fresh, bad)
        assert not fresh.hosts.hosts and not fresh._peer_cache and fresh.now == 0.0


def test_a_register_beyond_63_in_a_compiled_blob_is_refused(evidence, monkeypatch):
    """The compiled model indexes a table by register value: a file must not make it read
    past it."""
    import base64

    monkeypatch.delenv("MSEWATCH_PURE_PYTHON", raising=False)
    eng = Engine()
    if state.model_kind(eng) != "compiled":
        pytest.skip("the compiled host model is not built")
    cfg = eng.cfg.host
    for i in range(300):  # enough distinct peers in one bucket for register (HLL) mode
        eng.hosts.observe_flow("10.0.0.1", 100.0, f"1.2.{i // 256}.{i % 256}", 6881, None, False, False)
    snap = json.loads(state.export_state(eng))
    blob = bytearray(base64.b64decode(snap["hosts"][0][5]))
    # the first window's registers follow flows, 5 counters, 3 times (112 bytes), its bucket count
    # (4) and its bucket record (80): a non-zero one (a zero one would also change `zeros`)
    regs = range(112 + 4 + 80, 112 + 4 + 80 + (1 << cfg.hll_lg_k))
    at = next(j for j in regs if blob[j])
    blob[at] = 64
    assert state.import_state(Engine(), json.dumps({**snap, "hosts": snap["hosts"]}).encode()) == 1
    snap["hosts"][0][5] = base64.b64encode(bytes(blob)).decode()
    with pytest.raises(state.StateError):
        state.import_state(Engine(), json.dumps(snap).encode())


def test_state_file_missing_corrupt_and_saved(tmp_path, caplog, evidence):
    path = tmp_path / "state.json"
    m = Metrics()
    eng = Engine()
    keeper = state.StateFile(eng, path, m)
    assert keeper.restore() is False and m.state_load_errors_total == 0  # missing: empty, no error
    _decide(eng, evidence["corpus"])
    assert keeper.save_sync() and m.state_saves_total == 1
    assert not (tmp_path / "state.json.tmp").exists()
    again = Engine()
    assert state.StateFile(again, path, m).restore() is True
    assert list(again.hosts.hosts) == list(eng.hosts.hosts) and list(again._peer_cache) == list(eng._peer_cache)
    path.write_bytes(path.read_bytes()[:1000])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="msewatch.state"):
        assert state.StateFile(Engine(), path, m).restore() is False
    assert m.state_load_errors_total == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage() and warnings[0].exc_info is None
    # a stale temporary file (or a symlink planted at its name) is replaced, never followed
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (tmp_path / "state.json.tmp").symlink_to(target)
    assert keeper.save_sync()
    assert target.read_text() == "keep" and json.loads(path.read_bytes())["format"] == state.FORMAT
    # a save that cannot write is logged and counted; the previous file stays
    os.chmod(tmp_path, 0o500)
    try:
        if os.geteuid() != 0:
            assert keeper.save_sync() is False and m.state_save_errors_total == 1
    finally:
        os.chmod(tmp_path, 0o700)


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure-python"])
def test_msewatch_run_restores_and_saves_its_state_file(tmp_path, pure):
    """A real `msewatch run` against the fake Zeek: saved at SIGTERM, restored by the next run
    (a fresh process: nothing loaded before the restore), a corrupt file is one warning and an
    empty start."""
    from test_bridge import EVIDENCE_TOPIC
    from test_service import wait_until
    from zeek_fake import FakeZeek

    from msewatch.wire import events, v1

    evs = extract_evidence([CORPUS / "mse_rc4_libtorrent_transmission.pcap", CORPUS / "dht_local.pcap"])
    half = len(evs) // 2
    path = tmp_path / "state-{shard}.json"
    real = tmp_path / "state-all.json"

    async def one_run(batch) -> tuple[int, str, list]:
        zeek = await FakeZeek().start()
        (tmp_path / "run.yaml").write_text(yaml.safe_dump({
            "zeek": {"endpoints": [zeek.url]}, "metrics": {"enabled": False},
            "state": {"path": str(path), "interval": 0.2}}))
        env = dict(os.environ, PYTHONPATH=str(BRIDGE))
        env.pop("MSEWATCH_PURE_PYTHON", None)
        if pure:
            env["MSEWATCH_PURE_PYTHON"] = "1"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "msewatch", "run", "-c", str(tmp_path / "run.yaml"),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await zeek.wait_connected(timeout=120)
            for ev in batch:
                await zeek.publish(EVIDENCE_TOPIC, v1.encode_event_message(EVIDENCE_TOPIC, events.evidence_to_event(ev)))
            await zeek.wait_for(lambda: len(zeek.received) >= len(batch), timeout=60)  # a verdict per flow, and host verdicts
            await wait_until(lambda: real.exists(), 60, "a periodic save")
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await zeek.terminate()
        return rc, (await proc.stderr.read()).decode(), list(zeek.received)

    rc, err, _ = asyncio.run(one_run(evs[:half]))
    assert rc == 0 and "Traceback" not in err, err
    assert "does not exist yet" in err
    saved = json.loads(real.read_bytes())
    assert saved["hosts"] and saved["model"] == ("python" if pure else "compiled"), saved["model"]
    rc, err, _ = asyncio.run(one_run(evs[half:]))
    assert rc == 0 and "host state restored from" in err and "Traceback" not in err, err
    real.write_bytes(b"{garbage")
    rc, err, _ = asyncio.run(one_run(evs[:1]))
    assert rc == 0 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if str(real) in line and "starting with empty host state" in line]
    assert len(lines) == 1, err
    assert json.loads(real.read_bytes())["format"] == state.FORMAT  # replaced by the next save


def test_state_keys_are_validated_like_every_other_key(tmp_path):
    from msewatch.config import ConfigError, parse_config

    for bad, where in (({"interval": 0}, "state.interval"), ({"interval": "soon"}, "state.interval"),
                       ({"path": 3}, "state.path"), ({"paht": "x"}, "state.paht"),
                       ({"path": str(tmp_path / "no" / "s.json")}, "state.path")):
        with pytest.raises(ConfigError, match=where):
            parse_config({"state": bad}, check_files=True)
    cfg = parse_config({"state": {"path": str(tmp_path / "s-{shard}.json"), "interval": 5}}, check_files=True)
    assert cfg.state.interval == 5.0
    from msewatch.bridge import expand_shard_paths

    assert expand_shard_paths(cfg.model_copy(update={"zeek": cfg.zeek.model_copy(update={"shard": "1/4"})})
                              ).state.path == str(tmp_path / "s-1of4.json")
