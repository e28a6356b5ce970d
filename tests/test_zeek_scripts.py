"""The Zeek package without Zeek: every script parses, and every declaration,
handler and publication of the wire events matches docs/evidence.md.  The tests
that run a real Zeek (the btest suite among them) are in test_zeek_real.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT_DIRS = [REPO / "zeek-scripts", REPO / "tests" / "zeek"]
CONTRACT = REPO / "docs" / "evidence.md"
ZEEK_FILES = sorted(
    p for d in SCRIPT_DIRS for p in d.rglob("*.zeek") if ".tmp" not in p.parts
)


def zeek_script_cli() -> str:
    beside_python = Path(sys.executable).parent / "zeek-script"
    found = str(beside_python) if beside_python.exists() else shutil.which("zeek-script")
    if not found:
        pytest.fail("zeek-script not found: pip install zeekscript (the [test] extra has it)")
    return found


def parses(path: Path) -> tuple[bool, str]:
    """zeek-script exits 0 on a clean tree, 1 on a hard error, 2 on error nodes."""
    proc = subprocess.run(
        [zeek_script_cli(), "parse", "--quiet", str(path)], capture_output=True, text=True
    )
    return proc.returncode == 0, proc.stdout + proc.stderr


# --- parsing -------------------------------------------------------------------


def test_package_has_scripts_to_check():
    names = {p.name for p in ZEEK_FILES}
    assert {"__load__.zeek", "main.zeek", "evidence.zeek", "verdicts.zeek"} <= names


@pytest.mark.parametrize("path", ZEEK_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_zeek_script_parses(path):
    ok, output = parses(path)
    assert ok, f"{path.relative_to(REPO)} does not parse:\n{output[-2000:]}"


@pytest.mark.parametrize(
    "snippet",
    [
        "event zeek_init()\n\t{\n\tlocal x = ;\n\t}\n",
        "event zeek_init()\n\t{\n\tlocal x = 1\n\tprint x;\n\t}\n",
        "module M;\nexport {\n\toption budget: count = 32\n}\n",
    ],
    ids=["missing-initializer", "missing-semicolon", "unterminated-export"],
)
def test_parse_check_rejects_broken_script(tmp_path, snippet):
    broken = tmp_path / "broken.zeek"
    broken.write_text(snippet)
    ok, _ = parses(broken)
    assert not ok, "the parse check accepted a broken script: it would not catch errors"


# --- event signatures against the contract ---------------------------------------

ZEEK_TYPE = r"[A-Za-z_:]+(?:\s+of\s+[A-Za-z_:]+)?"


def contract_flow_evidence() -> list[tuple[str, str]]:
    """(name, Zeek type) of flow_evidence's arguments from the contract's table."""
    rows = []
    in_table = False
    for line in CONTRACT.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:3] == ["#", "name", "Zeek type"]:
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            if cells[0].isdigit():
                assert int(cells[0]) == len(rows) + 1, f"table rows out of order at {cells}"
                rows.append((cells[1], normalize_type(cells[2])))
    assert len(rows) == 21, f"expected 21 flow_evidence arguments in {CONTRACT}, found {len(rows)}"
    return rows


def contract_signature(event: str) -> list[tuple[str, str]]:
    """(name, type) of `MSEWatch::<event>(...)` written in the contract's prose."""
    text = " ".join(CONTRACT.read_text().split())
    m = re.search(rf"`MSEWatch::{event}\((.*?)\)`", text)
    assert m, f"no signature for MSEWatch::{event} in {CONTRACT}"
    return parse_params(m.group(1))


def normalize_type(t: str) -> str:
    return " ".join(t.replace("`", "").split())


def parse_params(text: str) -> list[tuple[str, str]]:
    params = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, typ = part.partition(":")
        typ = re.sub(r"&\w+(=\S+)?", "", typ)  # attributes such as &default
        params.append((name.strip(), normalize_type(typ)))
    return params


def zeek_source(path: Path) -> str:
    """The script without comments (a '#' inside a string is not a comment)."""
    out = []
    for line in path.read_text().splitlines():
        in_string = False
        for i, ch in enumerate(line):
            if ch == '"' and (i == 0 or line[i - 1] != "\\"):
                in_string = not in_string
            elif ch == "#" and not in_string:
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def signatures_in_scripts(event: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every declaration (`global <event>: event(...)`) and handler
    (`event MSEWatch::<event>(...)`) of the event in the package and tests."""
    found = []
    decl = re.compile(rf"global\s+{event}\s*:\s*event\s*\(([^;{{}}]*?)\)\s*;", re.S)
    handler = re.compile(
        rf"\bevent\s+MSEWatch::{event}\s*\(([^;{{}}]*?)\)\s*(?:&priority\s*=\s*-?\d+\s*)?\{{", re.S
    )
    for path in ZEEK_FILES:
        src = zeek_source(path)
        for rx in (decl, handler):
            for m in rx.finditer(src):
                found.append((f"{path.relative_to(REPO)}:{src[: m.start()].count(chr(10)) + 1}", parse_params(m.group(1))))
    return found


def publications_in_scripts(event: str) -> list[tuple[str, list[str]]]:
    """Argument names of `Cluster::publish(topic, MSEWatch::<event>, ...)` and
    `Broker::publish(...)` calls, and of `Cluster::make_event(MSEWatch::<event>, ...)`
    (evidence made for delivery.zeek, which publishes it)."""
    found = []
    publish = re.compile(
        rf"(?:(?:Cluster|Broker)::publish\s*\([^,]+,|(?:Cluster|Broker)::make_event\s*\()\s*MSEWatch::{event}\s*,(.*?)\)\s*[;)]",
        re.S,
    )
    for path in (REPO / "zeek-scripts").rglob("*.zeek"):
        src = zeek_source(path)
        for m in publish.finditer(src):
            # `e$uid` (fields of a record holding the evidence) names the argument `uid`
            args = [a.strip().split("$")[-1] for a in m.group(1).split(",")]
            found.append((f"{path.relative_to(REPO)}:{src[: m.start()].count(chr(10)) + 1}", args))
    return found


def test_contract_tables_are_readable():
    assert contract_flow_evidence()[0] == ("version", "count")
    assert contract_signature("verdict")[0] == ("uid", "string")
    assert contract_signature("host_verdict")[0] == ("host", "addr")


@pytest.mark.parametrize("event", ["flow_evidence", "verdict", "host_verdict", "flow_labels", "hello"])
def test_event_signatures_match_contract(event):
    want = contract_flow_evidence() if event == "flow_evidence" else contract_signature(event)
    found = signatures_in_scripts(event)
    assert any("zeek-scripts" in where for where, _ in found), f"MSEWatch::{event} is not declared"
    for where, params in found:
        assert params == want, (
            f"{where}: MSEWatch::{event} arguments differ from docs/evidence.md\n"
            f"  script:   {params}\n  contract: {want}"
        )


def test_flow_evidence_is_published_with_contract_arguments():
    want = [name for name, _ in contract_flow_evidence()]
    found = publications_in_scripts("flow_evidence")
    assert found, "flow_evidence is never published"
    for where, args in found:
        assert args == want, f"{where}: published arguments {args} differ from {want}"


def test_flow_evidence_is_raised_with_every_argument():
    raise_rx = re.compile(r"\bevent\s+MSEWatch::flow_evidence\s*\(([^{}]*?)\)\s*;", re.S)
    src = zeek_source(REPO / "zeek-scripts" / "evidence.zeek")
    raises = raise_rx.findall(src)
    assert len(raises) == 1, "evidence.zeek should raise flow_evidence in exactly one place"
    depth, args = 0, 1
    for ch in raises[0]:
        depth += ch in "([" and 1 or ch in ")]" and -1 or 0
        args += ch == "," and depth == 0
    assert args == len(contract_flow_evidence())


def test_topics_match_contract():
    text = CONTRACT.read_text()
    main = zeek_source(REPO / "zeek-scripts" / "main.zeek")
    for topic in re.findall(r'const (?:evidence|verdict)_topic = "([^"]+)"', main):
        assert f"`{topic}`" in text, f"topic {topic} is not the contract's"
