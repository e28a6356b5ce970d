"""contrib/: the systemd unit, the logrotate snippet, the sensor config and the Containerfile
are correct by construction where no service manager or container engine can run them here:
systemd-analyze verifies the unit, logrotate rotates under a running bridge, and every path
and command they name exists in the package."""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from msewatch.cli import build_parser, normalize_shard
from msewatch.config import load_config

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "contrib" / "systemd" / "msewatch@.service"
LOGROTATE = REPO / "contrib" / "logrotate" / "msewatch"
CONTAINERFILE = REPO / "contrib" / "Containerfile"
SENSOR_CONFIG = REPO / "contrib" / "msewatch.yaml"
MSEWATCH = Path(sys.executable).with_name("msewatch")


def unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # keys are case-sensitive in systemd
    cp.read_string(UNIT.read_text())
    return cp


def test_unit_is_hardened():
    svc = unit()["Service"]
    want = {
        "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "UMask": "0027", "CapabilityBoundingSet": "", "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "LogsDirectory": "msewatch",
    }
    for key, value in want.items():
        assert svc.get(key) == value, key


def test_unit_runs_one_shard_per_instance_and_reloads_with_sighup():
    svc = unit()["Service"]
    argv = shlex.split(svc["ExecStart"])
    assert argv[1:] == ["run", "--config", "/etc/msewatch/msewatch.yaml", "--shard", "%i"]
    args = build_parser().parse_args([a.replace("%i", "0of4") for a in argv[1:]])
    assert normalize_shard(args.shard) == "0/4" and normalize_shard("all") is None
    assert "-HUP" in svc["ExecReload"] and "$MAINPID" in svc["ExecReload"]
    # the flush on SIGTERM must fit in the stop timeout
    assert int(svc["TimeoutStopSec"].rstrip("s")) > load_config(SENSOR_CONFIG).zeek.shutdown_timeout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("instance", ["0of4", "all"])
def test_systemd_analyze_verify_accepts_the_unit(tmp_path, instance):
    # verify checks that ExecStart's program exists: point it at this venv's msewatch
    text = UNIT.read_text().replace("/opt/msewatch/bin/msewatch", str(MSEWATCH))
    path = tmp_path / f"msewatch@{instance}.service"
    path.write_text(text)
    res = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


def test_sensor_config_is_valid_and_writes_one_file_per_shard_under_the_logs_directory():
    cfg = load_config(SENSOR_CONFIG)
    assert cfg.outputs.verdicts_jsonl.startswith(f"/var/log/{unit()['Service']['LogsDirectory']}/")
    assert "{shard}" in cfg.outputs.verdicts_jsonl
    # the host state file lives where the unit may write (StateDirectory), one per shard
    assert cfg.state.path.startswith(f"/var/lib/{unit()['Service']['StateDirectory']}/") and "{shard}" in cfg.state.path


def test_logrotate_snippet_covers_the_sensor_outputs_and_reloads_every_shard():
    text = LOGROTATE.read_text()
    head = text[text.index("/var/log"):text.index("{")].split()
    cfg = load_config(SENSOR_CONFIG)
    from fnmatch import fnmatch

    assert any(fnmatch(cfg.outputs.verdicts_jsonl.replace("{shard}", "0of4"), pat) for pat in head)
    assert "nocreate" in text and "systemctl reload 'msewatch@*.service'" in text


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
def test_logrotate_under_a_running_bridge_loses_no_verdict(tmp_path):
    """The snippet itself, with its paths moved into tmp_path and `systemctl reload` replaced
    by the SIGHUP it sends, run by the real logrotate against a running `msewatch run`."""
    sys.path.insert(0, str(REPO / "tests" / "bridge"))
    from test_bridge import EVIDENCE_TOPIC, evidence_message
    from zeek_fake import FakeZeek

    logs = tmp_path / "log"
    logs.mkdir()
    out = logs / "verdicts-all.jsonl"

    async def scenario():
        zeek = await FakeZeek().start()
        (tmp_path / "run.yaml").write_text(yaml.safe_dump({
            "zeek": {"endpoints": [zeek.url], "shutdown_timeout": 20}, "metrics": {"port": 0},
            "outputs": {"verdicts_jsonl": str(logs / "verdicts-{shard}.jsonl")}}))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "msewatch", "run", "-c", str(tmp_path / "run.yaml"), "--shard", "all",
            env=dict(os.environ, PYTHONPATH=str(REPO / "bridge")), stderr=asyncio.subprocess.PIPE)
        conf = LOGROTATE.read_text().replace("/var/log/msewatch", str(logs))
        conf = re.sub(r"systemctl reload .*", f"kill -HUP {proc.pid}", conf)
        (tmp_path / "logrotate.conf").write_text(conf)
        sent = []

        async def publish(lo, hi):
            for i in range(lo, hi):
                await zeek.publish(EVIDENCE_TOPIC, evidence_message(i))
                sent.append(f"C{i:017d}")

        def at_zeek():
            return {ev.args[0] for _, ev in zeek.received if ev.name == "MSEWatch::verdict"}

        async def until(pred, what):
            for _ in range(3000):
                if pred():
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"timed out: {what}")

        try:
            await zeek.wait_connected(timeout=120)
            await publish(0, 30)
            await until(lambda: len(at_zeek()) >= 30, "30 verdicts")
            rot = await asyncio.create_subprocess_exec(
                "logrotate", "-f", "-s", str(tmp_path / "state"), str(tmp_path / "logrotate.conf"),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            rot_out, rot_err = await rot.communicate()
            assert rot.returncode == 0, rot_err.decode()
            await until(out.exists, "the reopened file")
            await publish(30, 60)
            await until(lambda: len(at_zeek()) >= 60, "60 verdicts")
            await until(lambda: len(_uids(out)) >= 30, "30 verdicts in the new file")
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await zeek.terminate()
        return rc, sent

    rc, sent = asyncio.run(scenario())
    assert rc == 0
    rotated = sorted(p for p in logs.iterdir() if p.name != out.name)
    assert [p.name for p in rotated] == ["verdicts-all.jsonl.1"]  # delaycompress: the newest stays plain
    assert _uids(rotated[0]) + _uids(out) == sent
    assert oct(out.stat().st_mode & 0o777) in ("0o640", "0o644", "0o664")  # created by the bridge


def _uids(path: Path) -> list[str]:
    return [v["uid"] for v in map(json.loads, path.read_text().splitlines()) if v["type"] == "flow"]


def test_containerfile_copies_what_the_build_needs_and_runs_unprivileged():
    text = CONTAINERFILE.read_text()
    for src in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, re.M):
        for item in src.split():
            assert (REPO / item.rstrip("/")).exists(), item
    # the build stage copies every input of the wheel (setup.py SHIPPED + pyproject package dir)
    for need in ("pyproject.toml", "setup.py", "bridge/", "suricata-rules/", "zeek-scripts/", "LICENSE"):
        assert need in text
    assert re.search(r"^USER 10001", text, re.M) and 'ENTRYPOINT ["msewatch"]' in text
    assert re.search(r"^ARG PYTHON_IMAGE=", text, re.M) and text.count("FROM ${PYTHON_IMAGE}") == 2
    assert "STOPSIGNAL SIGTERM" in text


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MSEWATCH_CONTAINER_TEST"),
                    reason="set MSEWATCH_CONTAINER_TEST=1 to build the image with podman or docker (pulls a Python image)")
def test_container_image_builds_and_runs_msewatch():
    """Opt-in: MSEWATCH_CONTAINER_BASE=image overrides the Python base (PYTHON_IMAGE build arg)."""
    engine = shutil.which("podman") or shutil.which("docker")
    assert engine, "podman or docker needed"
    base = os.environ.get("MSEWATCH_CONTAINER_BASE")
    args = ["--build-arg", f"PYTHON_IMAGE={base}"] if base else []
    res = subprocess.run([engine, "build", *args, "-f", str(CONTAINERFILE), "-t", "msewatch-test", str(REPO)],
                         capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    res = subprocess.run([engine, "run", "--rm", "msewatch-test", "rules", "check"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "rules ok" in res.stdout, res.stderr
    res = subprocess.run([engine, "run", "--rm", "msewatch-test", "check-config", "/etc/msewatch/msewatch.yaml"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


# written in parts so that this file does not name them itself
MIRROR_HOSTS = tuple(".".join(parts) for parts in (
    ("deb", "debian", "org"), ("ftp", "debian", "org"), ("security", "debian", "org"),
    ("httpredir", "debian", "org"), ("archive", "ubuntu", "com"), ("security", "ubuntu", "com")))


def test_no_project_file_names_a_package_mirror():
    """Apt sources come from the machine's own Debian source (tools/setup-system.sh)."""
    skip = {".venv", ".git", "data", "__pycache__", "build", "out", ".tmp"}
    found = []
    for path in REPO.rglob("*"):
        if any(part in skip for part in path.relative_to(REPO).parts) or not path.is_file():
            continue
        if path.suffix in (".pcap", ".png", ".gz", ".whl") or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="ignore")
        found += [f"{path.relative_to(REPO)}: {h}" for h in MIRROR_HOSTS if h in text]
    assert not found
