"""`msewatch analyze` end to end on real captures from real clients (tests/data/corpus,
made by tools/corpus/generate; see docs/corpus.md), and its handling of bad input."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
MSEWATCH = [sys.executable, "-m", "msewatch"]


def analyze(*args, check=True):
    p = subprocess.run(MSEWATCH + ["analyze", "--no-progress", *map(str, args)], capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def verdicts(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def labels():
    with open(CORPUS / "labels.csv") as f:
        return list(csv.DictReader(f))


def pcaps_with(protocol):
    return sorted({r["pcap"] for r in labels() if r["protocol"] == protocol})


def test_mse_between_two_implementations_is_p2p_likely_bt_mse_with_reasons():
    rows = [r for r in labels() if r["protocol"] == "bt_mse" and r["client"].split()[0] != r["server"].split()[0]]
    assert rows, "the corpus must hold an MSE flow between two different client implementations"
    by_pcap = {}
    for r in rows:
        by_pcap.setdefault(r["pcap"], []).append(r)
    for pcap, want in by_pcap.items():
        got = {
            (v["orig_h"], v["orig_p"], v["resp_h"], v["resp_p"]): v
            for v in verdicts(analyze(CORPUS / pcap).stdout)
            if v["type"] == "flow"
        }
        for r in want:
            v = got[(r["orig_h"], int(r["orig_p"]), r["resp_h"], int(r["resp_p"]))]
            assert v["label"] == "p2p_likely", (pcap, r, v)
            assert v["protocol"] == "bt_mse"
            assert any(x.startswith("burst1=") for x in v["reasons"])
            assert v["decided_at_packet"] >= 2


@pytest.mark.parametrize("protocol", ["tls", "ssh", "http"])
def test_tls_ssh_http_captures_are_never_p2p(protocol):
    pcaps = pcaps_with(protocol)
    assert pcaps, f"no {protocol} capture in the corpus"
    for pcap in pcaps:
        if any(r["label"] == "p2p" for r in labels() if r["pcap"] == pcap):
            continue  # a mixed scenario: its P2P flows are checked elsewhere
        flows = [v for v in verdicts(analyze(CORPUS / pcap).stdout) if v["type"] == "flow"]
        assert flows
        assert all(v["label"] in ("normal_likely", "unknown") for v in flows), pcap


def test_summary_table_on_stderr_counts_labels():
    pcap = pcaps_with("bt_mse")[0]
    p = analyze(CORPUS / pcap)
    assert "msewatch summary:" in p.stderr and "p2p_likely" in p.stderr


def test_output_file_option_writes_json_lines(tmp_path):
    out = tmp_path / "v.jsonl"
    analyze(CORPUS / pcaps_with("tls")[0], "-o", out)
    lines = verdicts(out.read_text())
    assert lines and {v["type"] for v in lines} <= {"flow", "host"}


def test_truncated_capture_flushes_verdicts_then_fails_with_offset(tmp_path):
    src = CORPUS / pcaps_with("bt_mse")[0]
    data = src.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 2 // 3] + b"\x01\x02\x03")  # ends inside a record
    p = analyze(cut, check=False)
    assert p.returncode == 2
    assert "cut.pcap" in p.stderr and "byte offset" in p.stderr
    assert "Traceback" not in p.stderr
    flows = [v for v in verdicts(p.stdout) if v["type"] == "flow"]
    assert any(v["label"] == "p2p_likely" for v in flows)  # what was decided got out


def test_non_pcap_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("GET / HTTP/1.1\r\n\r\n")
    p = analyze(bad, check=False)
    assert p.returncode == 2
    err = [line for line in p.stderr.splitlines() if line.startswith("msewatch: error")]
    assert len(err) == 1 and "not a pcap or pcapng file" in err[0]
    assert "Traceback" not in p.stderr


def test_unsupported_link_type_is_a_one_line_error(tmp_path):
    import struct

    bad = tmp_path / "wifi.pcap"
    # pcap global header with link type 105 (IEEE 802.11) and one record
    bad.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 105) + struct.pack("<IIII", 1, 0, 4, 4) + b"abcd")
    p = analyze(bad, check=False)
    assert p.returncode == 2 and "link type 105" in p.stderr and "Traceback" not in p.stderr


def test_missing_file_and_bad_config_are_clear_errors(tmp_path):
    p = analyze(tmp_path / "nope.pcap", check=False)
    assert p.returncode == 2 and "no such file" in p.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("budget:\n  max_packets: lots\n")
    p = analyze(CORPUS / pcaps_with("tls")[0], "--config", cfg, check=False)
    assert p.returncode == 1 and "budget.max_packets" in p.stderr


def test_pcapng_input_gives_the_same_verdicts(tmp_path):
    import dpkt

    src = CORPUS / pcaps_with("bt_mse")[0]
    ng = tmp_path / "x.pcapng"
    with open(src, "rb") as fi, open(ng, "wb") as fo:
        r = dpkt.pcap.Reader(fi)
        w = dpkt.pcapng.Writer(fo, linktype=r.datalink())
        for ts, buf in r:
            w.writepkt(buf, ts=ts)
    strip = lambda vs: [(v.get("label"), v.get("protocol"), v.get("orig_p"), v.get("decided_at_packet")) for v in vs]  # noqa: E731
    assert strip(verdicts(analyze(src).stdout)) == strip(verdicts(analyze(ng).stdout))
