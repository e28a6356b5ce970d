"""The built tarball works as a suricata-update source (file:// URL with its .md5)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_suricata
from msewatch.suricata import rules as rp
from suri import RULES_DIR, SURICATA

SURICATA_UPDATE = shutil.which("suricata-update", path=str(Path(sys.executable).parent)) or shutil.which("suricata-update")
pytestmark = pytest.mark.skipif(SURICATA_UPDATE is None, reason="suricata-update not installed")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    res = subprocess.run([SURICATA_UPDATE, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _update(tmp_path: Path, extra: list[str]) -> tuple[str, subprocess.CompletedProcess]:
    tar = rp.build(tmp_path / "dist")
    data = tmp_path / "data"
    cfg = tmp_path / "update.yaml"
    cfg.write_text("{}\n")
    common = ["-D", str(data), "-c", str(cfg)]
    _run(["add-source", *common, "msewatch", tar.resolve().as_uri()], tmp_path)
    res = _run(["update", *common, "--no-reload", *extra], tmp_path)
    return (data / "rules" / "suricata.rules").read_text(), res


def _sids(text: str, enabled: bool) -> set[int]:
    pat = r"^alert .*?sid:(\d+);" if enabled else r"^# alert .*?sid:(\d+);"
    return {int(s) for s in re.findall(pat, text, flags=re.M)}


def test_suricata_update_installs_every_sid_without_testing(tmp_path):
    conf = "/etc/suricata/suricata.yaml"
    extra = ["--no-test"]
    if Path(conf).exists():
        extra += ["--suricata-conf", conf]
    if SURICATA:
        extra += ["--suricata", SURICATA]
    text, _ = _update(tmp_path, extra)
    pack = rp.load_rules(RULES_DIR)
    assert {r.sid for r in pack if r.enabled} <= _sids(text, True)
    # the Lua rules arrive disabled, as shipped
    assert {r.sid for r in pack if not r.enabled} <= _sids(text, False)


@needs_suricata
def test_suricata_update_merged_ruleset_passes_suricata_test(tmp_path):
    text, res = _update(tmp_path, ["--suricata", SURICATA, "--suricata-conf", "/etc/suricata/suricata.yaml"])
    assert "Skipping test" not in res.stdout + res.stderr
    assert {r.sid for r in rp.load_rules(RULES_DIR) if r.enabled} <= _sids(text, True)
