"""Run the real Suricata over pcaps with only the msewatch rules, and read what it said."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "suricata-rules"
RULES = RULES_DIR / "msewatch.rules"
CORPUS = REPO / "tests" / "data" / "corpus"
SURICATA = shutil.which("suricata")
SKIP_REASON = "suricata not installed"

# Test LANs are private on both sides (PROTOCOL-FACTS §9): name the address groups explicitly.
HOME_NET = "[10.0.0.0/8,172.16.0.0/12,192.168.0.0/16]"
EVE_INDEX = 1  # outputs[1] is eve-log in the shipped /etc/suricata/suricata.yaml


def eve_log_index(conf: Path = Path("/etc/suricata/suricata.yaml")) -> int:
    """Index of the eve-log entry in the outputs list of the shipped config (1 on Debian's 7.0)."""
    try:
        text = conf.read_text()
    except OSError:
        return EVE_INDEX
    idx, in_outputs = -1, False
    for line in text.splitlines():
        if re.match(r"^outputs:", line):
            in_outputs = True
            continue
        if in_outputs:
            if re.match(r"^\S", line) and not line.startswith("#"):
                break
            m = re.match(r"^  - ([\w-]+):", line)
            if m:
                idx += 1
                if m.group(1) == "eve-log":
                    return idx
    return EVE_INDEX


def common_sets(extra: dict[str, str] | None = None) -> list[str]:
    i = eve_log_index()
    sets = {
        "vars.address-groups.HOME_NET": HOME_NET,
        "vars.address-groups.EXTERNAL_NET": "any",
        f"outputs.{i}.eve-log.community-id": "true",
    }
    sets.update(extra or {})
    out: list[str] = []
    for k, v in sets.items():
        out += ["--set", f"{k}={v}"]
    return out


def suricata_test(rule_files: list[Path], logdir: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    logdir.mkdir(parents=True, exist_ok=True)
    args = [SURICATA, "-T", "-v", "-l", str(logdir)]
    for n, rf in enumerate(rule_files):
        args += ["--set", f"rule-files.{n}={rf.name}"]
    args += ["--set", f"default-rule-path={rule_files[0].parent}"]
    args += common_sets(extra)
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def run_pcap(pcap: Path, logdir: Path, rules: Path = RULES, extra: dict[str, str] | None = None) -> list[dict]:
    """suricata -r PCAP with only RULES; return the eve.json events."""
    logdir.mkdir(parents=True, exist_ok=True)
    args = [SURICATA, "-r", str(pcap), "-l", str(logdir), "-S", str(rules), "-k", "none"]
    args += common_sets(extra)
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"suricata -r {pcap} failed ({res.returncode}):\n{res.stderr}")
    events = []
    with open(logdir / "eve.json", "rb") as f:
        for line in f:
            events.append(json.loads(line))
    return events


def alert_sids(events: list[dict]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for e in events:
        if e.get("event_type") == "alert":
            sid = e["alert"]["signature_id"]
            counts[sid] = counts.get(sid, 0) + 1
    return counts


def log_problems(text: str) -> list[str]:
    """Warning/error lines of a suricata log or stderr (plain 'W:'/'E:' or '<Warning>' forms)."""
    out = []
    for line in text.splitlines():
        if re.search(r"(^|\s)(W|E):\s|<(Warning|Error)>|\b(Warning|Error):\s", line):
            out.append(line)
    return out
