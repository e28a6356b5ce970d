"""`msewatch analyze` streams verdicts out and keeps only what its summary needs, bounded
(issue 11 item 4: 1M SYN-only flows took 1.33 GB because every verdict dict was kept).
benchmarks/bench_analyze_memory.py measures the peak RSS; here: the summary is unchanged and
what analyze holds does not grow with the number of flows."""

from __future__ import annotations

import io
import struct
import tracemalloc
from collections import Counter
from pathlib import Path

import orjson

from msewatch.cli import Summary, main
from msewatch.config import Config
from msewatch.engine import Engine, run_pcaps

CORPUS = Path(__file__).resolve().parent / "data" / "corpus"


def reference_summary(verdicts: list[dict], out, top: int = 10) -> None:
    """The summary as analyze printed it before streaming (every verdict in a list)."""
    flows = [v for v in verdicts if v["type"] == "flow"]
    hosts = list({v["host"]: v for v in verdicts if v["type"] == "host"}.values())
    labels = Counter(v["label"] for v in flows)
    protos = Counter((v["label"], v["protocol"] if v["protocol"] not in (None, "", "unknown") else "-")
                     for v in flows if v["label"] != "normal_likely")
    w = out.write
    w(f"\nmsewatch summary: {len(flows)} flows, {len(hosts)} hosts\n")
    w(f"{'flow label':<16}{'count':>8}\n")
    for lab in ("p2p_likely", "unknown", "normal_likely"):
        w(f"{lab:<16}{labels.get(lab, 0):>8}\n")
    if protos:
        w(f"\n{'label':<16}{'protocol':<12}{'count':>8}\n")
        for (lab, pr), n in sorted(protos.items(), key=lambda x: (-x[1], x[0])):
            w(f"{lab:<16}{pr:<12}{n:>8}\n")
    flagged = sorted((h for h in hosts if h["label"] != "normal_host"), key=lambda h: -h["score"])[:top]
    if flagged:
        w(f"\n{'host':<40}{'label':<13}{'P':>6}  reasons\n")
        for h in flagged:
            why = " ".join(r for r in h["reasons"] if not r.endswith("=0") and not r.endswith("=0.0"))
            w(f"{h['host']:<40}{h['label']:<13}{h['probability']:>6.2f}  {why}\n")
    w("\n")


def summaries(verdicts: list[dict], max_hosts: int = 100_000) -> tuple[str, str]:
    s = Summary(max_hosts)
    for v in verdicts:
        s.add(v)
    a, b = io.StringIO(), io.StringIO()
    s.write(a)
    reference_summary(verdicts, b)
    return a.getvalue(), b.getvalue()


def test_streaming_summary_equals_the_list_summary_on_real_captures():
    pcaps = [CORPUS / n for n in ("swarm.pcap", "dht_local.pcap", "https_fanout.pcap", "tls13_bulk.pcap")]
    verdicts = [v.to_dict() for v in run_pcaps([str(p) for p in pcaps], Engine(Config()))]
    ours, ref = summaries(verdicts)
    assert ours == ref and "p2p_host" in ours


def host(h: str, label: str, score: float) -> dict:
    return {"type": "host", "host": h, "label": label, "score": score, "probability": 0.5, "reasons": ["x=1"]}


def test_last_verdict_per_host_counts_downgrades_and_ties_keep_first_appearance():
    vs = [host("10.0.0.1", "p2p_host", 5.0), host("10.0.0.2", "p2p_host", 5.0), host("10.0.0.3", "unknown", 9.0),
          host("10.0.0.1", "normal_host", -3.0), host("10.0.0.1", "p2p_host", 5.0), host("10.0.0.3", "normal_host", 0.0),
          host("10.0.0.4", "unknown", 5.0)]
    ours, ref = summaries(vs)
    assert ours == ref
    assert ours.index("10.0.0.1") < ours.index("10.0.0.2") < ours.index("10.0.0.4") and "10.0.0.3" not in ours


def test_host_tables_are_capped_and_the_count_becomes_an_estimate():
    s = Summary(max_hosts=16)
    for i in range(20_000):
        s.add(host(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "p2p_host" if i % 2 else "normal_host", i / 1000))
    assert len(s.host_order) == 16 and len(s.flagged) <= 32
    text = s.hosts_text()
    assert text.startswith("about ") and abs(int(text.split()[1]) - 20_000) < 20_000 * 0.05
    out = io.StringIO()
    s.write(out)
    top = [line.split()[0] for line in out.getvalue().splitlines() if line.startswith("10.")]
    assert top[:3] == ["10.0.78.31", "10.0.78.29", "10.0.78.27"]  # the highest scores survive the trimming


def syn_only_pcap(path: Path, flows: int, hosts: int = 64) -> Path:
    """The reproducer's shape, scaled down: one SYN per flow, each to a distinct address."""
    rec = struct.Struct("<IIII")
    parts = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]  # LINKTYPE_RAW
    for i in range(flows):
        ip = (b"\x45\x00\x00\x28\x00\x00\x40\x00\x40\x06\x00\x00" + (0x0A010000 + i % hosts).to_bytes(4, "big")
              + (0x2D000000 + i).to_bytes(4, "big"))
        pkt = ip + struct.pack("!HHIIBBHHH", 1024 + i % 60000, 443, i, 0, 0x50, 0x02, 65535, 0, 0)
        parts.append(rec.pack(1_700_000_000 + i // 100_000, i % 100_000 * 10, len(pkt), len(pkt)) + pkt)
    path.write_bytes(b"".join(parts))
    return path


def traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_analyze_holds_no_more_than_the_engine_alone(tmp_path, capsys):
    """The reproducer scaled down: SYN-only flows through a small flow table. The engine's own
    peak is the baseline; analyze (verdicts written, summary on) may add only its bounded
    summary. Before, it added every verdict dict: ~1.3 KB per flow, ~10 MB here."""
    flows = 8_000
    pcap = syn_only_pcap(tmp_path / "syn.pcap", flows)
    cfg = tmp_path / "small.yaml"
    cfg.write_text("flow_table: {max_flows: 256}\n")
    out = tmp_path / "v.jsonl"

    def engine_alone() -> None:
        from msewatch.config import load_config

        for _ in run_pcaps([str(pcap)], Engine(load_config(cfg))):
            pass

    def analyze() -> None:
        assert main(["analyze", str(pcap), "-c", str(cfg), "-o", str(out), "--no-progress"]) == 0

    warm = syn_only_pcap(tmp_path / "warm.pcap", 10)  # imports happen here, outside the traces
    assert main(["analyze", str(warm), "-c", str(cfg), "-o", str(out), "--no-progress"]) == 0
    engine_peak = traced_peak(engine_alone)
    analyze_peak = traced_peak(analyze)
    assert sum(1 for line in out.read_bytes().splitlines() if orjson.loads(line)["type"] == "flow") == flows
    assert f"msewatch summary: {flows} flows, 64 hosts" in capsys.readouterr().err
    assert analyze_peak < engine_peak + 1_500_000, (engine_peak, analyze_peak)
