"""The command line: every argument is described in --help, exit codes are documented, and
every missing or wrong input is one line on stderr with a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from msewatch import cli

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "data" / "corpus"
PCAP = CORPUS / "dns.pcap"
ENV = dict(os.environ, PYTHONPATH=str(REPO / "bridge"))
NOT_HERE: set[str] = set()


class _Captured(Exception):
    pass


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser, including the delegated ones built inside their modules."""
    out: dict[str, argparse.ArgumentParser] = {}
    top = cli.build_parser()
    out["msewatch"] = top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name not in {n for n, *_ in cli.DELEGATED}:
                    out[name] = sub
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    try:
        for name, *_ in cli.DELEGATED:
            if name in NOT_HERE:
                continue
            try:
                cli.main([name])
            except _Captured as c:
                out[name] = c.args[0]
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    return out


def _walk(name: str, parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _walk(f"{name} {sub_name}", sub)
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield name, action


def test_every_argument_of_every_command_is_described():
    undocumented = [f"{name}: {a.dest}" for cmd, p in _parsers().items() for name, a in _walk(cmd, p)
                    if not (a.help and a.help.strip())]
    assert not undocumented


def test_every_command_is_listed_with_a_description():
    top = cli.build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    assert all(h.help for h in sub._choices_actions)
    assert {"analyze", "evidence", "run", "check-config", "default-config", "zeek-path", "eval", "annotate",
            "rules", "report"} <= set(sub.choices)


def test_help_documents_exit_codes():
    res = subprocess.run([sys.executable, "-m", "msewatch", "--help"], capture_output=True, text=True, env=ENV, timeout=60)
    assert res.returncode == 0
    for code in ("0 ", "1 ", "2 ", "130"):
        assert f"\n  {code}" in res.stdout
    res = subprocess.run([sys.executable, "-m", "msewatch", "run", "--help"], capture_output=True, text=True, env=ENV, timeout=60)
    assert "exit codes:" in res.stdout and "--metrics-port" in res.stdout and "SIGHUP" in res.stdout


def test_readme_documents_the_same_exit_codes():
    readme = (REPO / "README.md").read_text()
    assert "Exit codes" in readme
    for code in ("`0`", "`1`", "`2`", "`3`", "`130`"):
        assert code in readme


def _missing(tmp_path):
    return str(tmp_path / "missing.pcap")


CASES = {
    "analyze: missing pcap": (["analyze", "{missing}"], 2, "no such file"),
    "analyze: a folder": (["analyze", "{dir}"], 2, "is a directory"),
    "analyze: output folder missing": (["analyze", str(PCAP), "-o", "{dir}/no/such/out.jsonl"], 2, "cannot write"),
    "evidence: missing pcap": (["evidence", "{missing}"], 2, "no such file"),
    "evidence: a folder": (["evidence", "{dir}"], 2, "is a directory"),
    "annotate: missing pcap": (["annotate", "--pcap", "{missing}", "{eve}"], 2, "missing.pcap"),
    "annotate: pcap is a folder": (["annotate", "--pcap", "{dir}", "{eve}"], 2, "directory"),
    "annotate: missing verdicts": (["annotate", "--verdicts", "{dir}/v.jsonl", "{eve}"], 2, "v.jsonl"),
    "annotate: verdicts is a folder": (["annotate", "--verdicts", "{dir}", "{eve}"], 2, "directory"),
    "annotate: missing EVE": (["annotate", "--pcap", str(PCAP), "{dir}/eve.json"], 2, "eve.json"),
    "annotate: EVE is a folder": (["annotate", "--pcap", str(PCAP), "{dir}"], 2, "directory"),
    "check-config: missing": (["check-config", "{dir}/c.yaml"], 1, "cannot read config"),
    "run: missing config": (["run", "-c", "{dir}/c.yaml"], 1, "cannot read config"),
    "run: bad shard": (["run", "--shard", "4of4"], 1, "shard"),
    "run: bad metrics port": (["run", "--metrics-port", "70000"], 2, "--metrics-port"),
    "rules: missing folder": (["rules", "--rules-dir", "{dir}/none", "check"], 1, "does not exist"),
    "eval: missing pcap": (["eval", "{missing}"], 2, "missing.pcap"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_non_zero(tmp_path, case):
    argv, code, text = CASES[case]
    eve = tmp_path / "eve.json.in"
    eve.write_text('{"event_type":"flow","src_ip":"10.0.0.1","dest_ip":"10.0.0.2","proto":"TCP"}\n')
    argv = [a.format(missing=_missing(tmp_path), dir=tmp_path, eve=eve) for a in argv]
    res = subprocess.run([sys.executable, "-m", "msewatch", *argv], capture_output=True, text=True, env=ENV,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and text in errors[0], res.stderr


def test_systemd_instance_names_are_accepted_as_shards():
    assert cli.normalize_shard("0of4") == "0/4"
    assert cli.normalize_shard("3/8") == "3/8"
    assert cli.normalize_shard("xofy") == "xofy"
