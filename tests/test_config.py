"""Configuration: check-config catches what the run would die on, loading is bounded,
every failure is one line naming the file and the key (issue 11 items 5, 6, 7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.cli import main
from msewatch.config import (
    MAX_EXPANDED_NODES,
    Config,
    ConfigError,
    load_config,
    load_yaml_bounded,
    parse_config,
)


def check(tmp_path: Path, text: str | bytes, capsys) -> tuple[int, list[str]]:
    p = tmp_path / "c.yaml"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    rc = main(["check-config", str(p)])
    cap = capsys.readouterr()
    return rc, cap.err.strip().splitlines()


# what issue 11 item 6 found check-config passing and the run then dying on, and its kin
RUN_KILLERS = [
    ('host: {local_nets: ["10.0.0.0/33"]}', "host.local_nets: [0] '10.0.0.0/33' is not a network"),
    ('host: {local_nets: ["not-a-net"]}', "host.local_nets"),
    ("host: {windows: [0, -1, 5]}", "host.windows.0"),
    ("host: {windows: [10, 120, .inf]}", "host.windows.2"),
    ('metrics: {listen: "not an address"}', "metrics.listen: 'not an address' is not an IP address or host name"),
    ('metrics: {listen: ""}', "metrics.listen"),
    ("outputs: {verdicts_jsonl: /nonexistent-msewatch/dir/v.jsonl}", "outputs.verdicts_jsonl: folder"),
    ("scoring: {bias: .nan}", "scoring.bias: Input should be a finite number"),
    ("scoring: {weights: {lsd: .inf}}", "scoring.weights.lsd"),
    ("scoring: {weights: {lsd: 1.0e+300}}", "scoring.weights.lsd"),
    ("host: {bias: -.inf}", "host.bias"),
    ("budget: {max_age: .nan}", "budget.max_age"),
    ("flow_table: {tcp_idle_timeout: .inf}", "flow_table.tcp_idle_timeout"),
    ("zeek: {reconnect: {jitter: .nan}}", "zeek.reconnect.jitter"),
    ("zeek: {shutdown_timeout: .inf}", "zeek.shutdown_timeout"),
    ("zeek: {tls: {ca_file: /nonexistent-msewatch.pem}}",
     "zeek.tls.ca_file: cannot read '/nonexistent-msewatch.pem': No such file or directory"),
    ("zeek: {tls: {key_file: /etc/hostname}}", "zeek.tls: key_file is set but cert_file is not"),
    ("zeek: {tls: {cert_file: /nonexistent-msewatch.pem}}", "zeek.tls: cert_file/key_file: cannot read"),
    ("detect: {popcount_low: .nan}", "detect: popcount_low: nan is not a finite number"),
    ("detect: {printable_run: 2.5}", "detect: printable_run: expected int, got float"),
    ("detect: {mse_ff_prefix: 100000000000}", "detect: mse_ff_prefix: 100000000000 is out of range"),
    ('detect: {utp_excluded_ports: ["x"]}', "detect: utp_excluded_ports[0]: expected int"),
]


@pytest.mark.parametrize("text, message", RUN_KILLERS)
def test_check_config_rejects_what_the_run_would_die_on(tmp_path, capsys, text, message):
    rc, err = check(tmp_path, text, capsys)
    assert rc == 1
    assert err[0].startswith(f"msewatch: error: {tmp_path / 'c.yaml'}: ")
    assert message in "\n".join(err)


def test_ca_file_that_is_not_pem_names_the_key(tmp_path, capsys):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    rc, err = check(tmp_path, f"zeek: {{tls: {{ca_file: {junk}}}}}", capsys)
    assert rc == 1 and "zeek.tls.ca_file" in err[0] and "not a PEM certificate bundle" in err[0]


def test_verdicts_jsonl_in_an_existing_folder_is_fine_and_local_nets_are_normalised(tmp_path):
    cfg = parse_config({"outputs": {"verdicts_jsonl": str(tmp_path / "v.jsonl")},
                        "host": {"local_nets": ["10.1.2.3/8", "fd00::1/8"]}})
    assert cfg.host.local_nets == ["10.0.0.0/8", "fd00::/8"]
    assert parse_config({"metrics": {"listen": "localhost"}}).metrics.listen == "localhost"
    assert parse_config({"metrics": {"listen": "::1"}}).metrics.listen == "::1"


def test_default_config_output_still_validates(tmp_path, capsys):
    assert main(["default-config"]) == 0
    text = capsys.readouterr().out
    p = tmp_path / "default.yaml"
    p.write_text(text)
    assert main(["check-config", str(p)]) == 0
    assert load_config(p) == Config()


def laughs(levels: int, under: str | None = None) -> str:
    """The YAML billion laughs: 9 aliases of the level below on each of `levels` levels."""
    ind = "  " if under else ""
    lines = [f"{under}:"] if under else []
    lines.append(f"{ind}l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]")
    for i in range(1, levels):
        lines.append(f"{ind}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_in_a_detect_parameter_is_rejected_quickly(tmp_path, capsys):
    """Issue 11 item 5: this used to hang check-config/analyze/run (1.29 GB after 90 s)."""
    text = laughs(9).replace("l0:", "popcount_low:", 1)
    text = "detect:\n" + "".join("  " + line + "\n" for line in text.splitlines())
    rc, err = check(tmp_path, text, capsys)
    assert rc == 1 and len(err) == 1
    assert f"aliases expand the document beyond {MAX_EXPANDED_NODES} nodes" in err[0]


@pytest.mark.parametrize("command", [["check-config"], ["analyze", "-c"], ["run", "-c"]])
def test_billion_laughs_stops_every_command_with_one_line(tmp_path, command):
    p = tmp_path / "laughs.yaml"
    p.write_text(laughs(9, under="detect"))
    args = command + [str(p)] + (["tests/data/corpus/dns.pcap"] if command[0] == "analyze" else [])
    r = subprocess.run([sys.executable, "-m", "msewatch", *args], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "aliases expand the document" in r.stderr


def test_recursive_alias_is_rejected():
    with pytest.raises(ValueError, match="recursive alias"):
        load_yaml_bounded("a: &a [1, *a]\n")


def test_aliases_below_the_limit_and_big_alias_free_documents_load():
    assert load_yaml_bounded(laughs(3))["l2"][8][8] == ["lol"] * 9
    assert len(load_yaml_bounded(laughs(4))["l3"]) == 9  # 9**4 = 6,561 nodes expanded
    big = "a: [" + ", ".join(["1"] * (MAX_EXPANDED_NODES + 10)) + "]\n"  # no aliases: not limited
    assert len(load_yaml_bounded(big)["a"]) == MAX_EXPANDED_NODES + 10


def test_error_messages_are_bounded(tmp_path, capsys):
    huge = "x" * 100_000
    rc, err = check(tmp_path, f"detect: {{popcount_low: [{huge}, {huge}]}}\nscoring: {{weights: {{{huge}: 1}}}}\n", capsys)
    assert rc == 1 and sum(len(e) for e in err) < 2000


@pytest.mark.parametrize("content, message", [
    (b"scoring:\n  bias: -4.0 # caf\xe9\n", "not UTF-8 text (byte 0xe9 at offset 27)"),
    (b"a: " + b"[" * 20000 + b"]" * 20000, "nested too deeply"),
    (b"a: " + b"1" * 5000, "not valid YAML: Exceeds the limit"),
    (b"a: 2020-13-45", "not valid YAML: month must be in 1..12"),
    (b"a: !!python/name:os.system", "not valid YAML"),
    (b"[1, 2]", "the top level must be a mapping"),
    (b"a: [b: c", "not valid YAML"),
])
def test_unreadable_configs_are_one_line_errors(tmp_path, capsys, content, message):
    rc, err = check(tmp_path, content, capsys)
    assert rc == 1 and len(err) == 1 and message in err[0], err


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes(b"\xef\xbb\xbfscoring: {bias: -3.0}\n")
    assert load_config(p).scoring.bias == -3.0


# arbitrary YAML-shaped data: loading and validating raise ConfigError or succeed, nothing else
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                       max_leaves=20)
_sections = st.sampled_from(["budget", "flow_table", "scoring", "host", "detect", "zeek", "metrics", "log", "outputs"])
_keys = st.sampled_from(["max_packets", "bias", "weights", "windows", "local_nets", "popcount_low", "endpoints",
                         "listen", "port", "tls", "verdicts_jsonl", "level", "utp_excluded_ports", "lsd"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_sections, st.one_of(_values, st.dictionaries(_keys, _values, max_size=3)), max_size=4))
def test_any_config_data_is_accepted_or_a_config_error(data):
    try:
        parse_config(data, "fuzz.yaml")
    except ConfigError as e:
        assert str(e).startswith("fuzz.yaml")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_load_or_raise_config_error(tmp_path_factory, raw):
    p = tmp_path_factory.mktemp("cfg") / "c.yaml"
    p.write_bytes(raw)
    try:
        load_config(p)
    except ConfigError as e:
        assert str(e).startswith(str(p))


def test_file_checks_belong_to_run_and_check_config_only(tmp_path, capsys):
    """A sensor's config names files of the sensor: analyze on another machine must not care."""
    text = ("outputs: {verdicts_jsonl: /nonexistent-msewatch/v.jsonl}\n"
            "zeek: {tls: {ca_file: /nonexistent-msewatch.pem}}\nlog: {file: /nonexistent-msewatch/x.log}\n")
    p = tmp_path / "sensor.yaml"
    p.write_text(text)
    assert load_config(p).outputs.verdicts_jsonl == "/nonexistent-msewatch/v.jsonl"
    with pytest.raises(ConfigError) as e:
        load_config(p, check_files=True)
    assert [line.split(": ")[1] for line in str(e.value).splitlines()] == [
        "zeek.tls.ca_file", "log.file", "outputs.verdicts_jsonl"]
    out = tmp_path / "v.jsonl"
    dns = Path(__file__).resolve().parent / "data" / "corpus" / "dns.pcap"
    assert main(["analyze", str(dns), "-c", str(p), "-o", str(out), "-q"]) == 0
    assert out.stat().st_size > 0
