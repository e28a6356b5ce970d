"""`msewatch report` without a browser: charts, inputs, labels, large inputs, CLI errors."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from msewatch.report import build_report, main_report
from msewatch.report import build as build_mod
from msewatch.report.charts import MseBands, bursts_chart, popcount_chart, score_path_chart

from .conftest import CORPUS, corpus_pcaps

# any attribute or CSS that would make the browser fetch something from the network
REMOTE_REF = re.compile(r"""(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)


def _uid_anchor(uid: str) -> str:
    return build_mod.anchor("flow", uid)


# ---------------------------------------------------------------------------- charts
def test_mse_bands_accept_the_spec_shape_and_reject_a_tls_shape():
    b = MseBands()
    assert b.fits([481, -357, 124, -595]) == [True, True, True, True]
    assert b.fits([517, -4326, 80]) == [True, False, True]  # resp burst too large for Yb + PadB
    assert b.fits([-200, 300]) == [False, False]  # server spoke first: wrong direction


def test_bursts_chart_draws_four_spec_bands_and_one_bar_per_burst_and_size():
    svg = bursts_chart("x", [481, -357, 124, -595, 68], [481, -357, 124, -595, 68, -1448])
    assert svg.startswith('<svg id="x" class="chart chart-bursts"')
    assert svg.count('class="spec-band"') == 4
    assert "MSE step 1: 96–608" in svg and "MSE step 3: ≥ 56" in svg and "MSE step 4: ≥ 14" in svg
    assert svg.count('class="bar burst"') == 5
    assert svg.count('class="bar size"') == 6
    assert "<title>" in svg


def test_bursts_chart_without_bands_says_why_and_draws_none():
    svg = bursts_chart("t", [357, -215], [357, -215, -90], None, no_bands_reason="protocol tracker")
    assert 'class="spec-band"' not in svg and "MSE step" not in svg
    assert "no MSE bands: protocol tracker" in svg
    assert "stroke-width=\"2\"" not in svg  # no in/out-of-range outlines either


def test_only_tcp_flows_guessed_mse_or_unrecognised_get_mse_bands():
    base = {"proto": "tcp", "protocol": "bt_mse"}
    assert build_mod.mse_bands_apply(base)
    assert build_mod.mse_bands_apply(dict(base, protocol=None))  # an old verdict: protocol null
    assert build_mod.mse_bands_apply(dict(base, protocol="unknown"))
    for p in ("tracker", "bt_plain", "tls", "ssh", "http"):
        assert not build_mod.mse_bands_apply(dict(base, protocol=p))
    assert not build_mod.mse_bands_apply({"proto": "udp", "protocol": "unknown"})


def test_histogram_has_count_ticks_and_threshold_labels_in_their_own_row():
    from msewatch.report.charts import histogram_chart

    svg = histogram_chart("h", {"p2p_likely": [0] * 19 + [265], "normal_likely": [120] + [0] * 19},
                          {"p2p_likely": "#c00", "normal_likely": "#0c0"}, [i / 20 for i in range(21)], "P", "P",
                          [(0.2, "T_low"), (0.9, "T_high")])
    ticks = re.findall(r'text-anchor="end" fill="#4a5568">(\d+)</text>', svg)
    assert len(ticks) >= 4 and ticks[0] == "0"
    # legend at y 14, threshold labels at y 38: separate rows, the plot starts below both
    assert re.search(r'y="14"[^>]*>p2p_likely<', svg)
    assert re.search(r'y="38"[^>]*class="threshold-label">T_high 0.9<', svg)


def test_popcount_chart_draws_the_band_and_a_running_mean_per_head():
    svg = popcount_chart("p", [("orig", bytes(range(256)), "random"), ("resp", b"HTTP/1.1 200 OK\r\n" * 4, "ex5")])
    assert 'class="spec-band popcount-band"' in svg
    assert "band 3.4–4.6" in svg
    assert svg.count('class="running-mean"') == 2
    assert "orig: 4.00 random" in svg


def test_score_chart_draws_both_thresholds_and_the_decision_packet():
    svg = score_path_chart("s", [[1, 0.75], [2, 0.95]], 0.2, 0.9, decided_at_packet=2, n_packets=8)
    assert svg.count('class="threshold"') == 2
    assert "T_low = 0.2" in svg and "T_high = 0.9" in svg
    assert 'class="decided"' in svg
    assert svg.count('class="score-point"') == 2


# ---------------------------------------------------------------------------- real corpus
@pytest.fixture(scope="module")
def corpus_flows() -> list[dict]:
    from msewatch.report.inputs import from_pcaps

    return from_pcaps(corpus_pcaps()).flows


@pytest.fixture(scope="module")
def corpus_report() -> str:
    return build_report(corpus_pcaps(), top=10, top_hosts=2)


@pytest.fixture(scope="module")
def mse_report(mse_flow) -> str:
    pcap, flow = mse_flow
    return build_report([pcap], labels=str(CORPUS / "labels.csv"), hosts=str(CORPUS / "hosts.csv"),
                        flows=[flow["uid"]])


def test_report_shows_the_known_mse_flow_with_its_three_charts(mse_report, mse_flow):
    _, flow = mse_flow
    a = _uid_anchor(flow["uid"])
    html = mse_report
    assert f'id="{a}"' in html
    for kind in ("bursts", "popcount", "score"):
        assert f'<svg id="{a}-{kind}" class="chart chart-{kind}"' in html
    card = html[html.index(f'id="{a}"'):]
    card = card[: card.index("</section>")]
    assert card.count('class="spec-band"') == 4  # MSE steps 1-4 behind the bursts
    assert "popcount-band" in card
    assert card.count('class="threshold"') == 2  # T_low and T_high
    assert "MSE bursts 1–4 in range</dt><dd>4/4" in card
    for r in flow["reasons"]:
        assert f"<li>{r}</li>" in card


def test_flagged_flows_in_detail_cover_every_kind_first(corpus_flows):
    """With a short --top, encrypted flows and every P2P protocol appear before a swarm's many
    tracker announces fill the budget."""
    sel = build_mod.select_flows(corpus_flows, build_mod.Options(top=8), None)
    protos = [f.get("protocol") for f, _ in sel]
    assert protos[0] == "bt_mse"
    assert {"bt_mse", "utp", "dht", "lsd", "tracker"} <= set(protos)


def test_flow_tables_have_time_pcap_and_both_family_lists(corpus_report):
    html = corpus_report
    for table in ("flow-index", "flow-table"):
        head = html[html.index(f'id="{table}"'):]
        head = head[: head.index("</tr>")]
        for col in ("time", "pcap", "own families", "context families"):
            assert f">{col}</th>" in head, (table, col)
    assert "<caption>times in UTC" in html


def test_report_has_summary_ground_truth_hosts_and_comparison(mse_report):
    html = mse_report
    for id_ in ("summary-labels", "summary-protocols", "summary-latency", "summary-probability",
                "confusion", "client-pairs", "hosts", "compare"):
        assert f'id="{id_}"' in html, id_
    assert 'class="chart chart-host"' in html
    assert "discovery (" in html and "encrypted (" in html


def test_report_is_self_contained(mse_report):
    assert REMOTE_REF.search(mse_report) is None
    assert "<script" not in mse_report.lower()
    assert "<link" not in mse_report.lower()
    assert not re.search(r"https?://", mse_report)


def test_report_from_analyze_and_evidence_jsonl_matches_the_pcap_run(tmp_path, mse_flow):
    from msewatch.cli import main as cli_main

    pcap, flow = mse_flow
    v, e = tmp_path / "v.jsonl", tmp_path / "e.jsonl"
    assert cli_main(["analyze", "-q", "--no-progress", pcap, "-o", str(v)]) == 0
    assert cli_main(["evidence", pcap, "-o", str(e)]) == 0
    out = tmp_path / "r.html"
    rc = main_report(["-q", "--verdicts", str(v), "--evidence", str(e), "--flow", flow["uid"],
                      "--labels", str(CORPUS / "labels.csv"), "-o", str(out)])
    assert rc == 0
    html = out.read_text()
    a = _uid_anchor(flow["uid"])  # seed 0 for the first pcap: same uid as `msewatch analyze`
    assert f'<svg id="{a}-bursts"' in html
    assert "No evidence record" not in html[html.index(f'id="{a}"'):][:3000]


def test_compare_puts_two_named_flows_side_by_side(mse_flow):
    pcap, flow = mse_flow
    from msewatch.report.inputs import from_pcaps

    pcaps = [pcap] + [p for p in corpus_pcaps() if p != pcap][:1]  # the first pcap keeps its uids
    other = next((f for f in from_pcaps(pcaps).flows if f["uid"] != flow["uid"]), None)
    if other is None:
        pytest.skip("the corpus has a single flow")
    html = build_report(pcaps, compare=[(flow["uid"], other["uid"])], top=0)
    cmp_ = html[html.index('id="compare"'):]
    assert f'id="cmp0-{flow["uid"]}-bursts"' in cmp_ and f'id="cmp0-{other["uid"]}-bursts"' in cmp_


# ---------------------------------------------------------------------------- large input
def _synthetic(n: int) -> tuple[list[dict], list[dict]]:
    flows, evs = [], []
    for i in range(n):
        uid = f"C{i:017d}"
        p2p = i % 40 == 0
        flows.append({
            "type": "flow", "ts": 1e9 + i, "uid": uid, "proto": "tcp", "orig_h": f"10.0.0.{i % 20}", "orig_p": 40000 + i,
            "resp_h": f"192.0.2.{i % 200}", "resp_p": 6881 if p2p else 443, "label": "p2p_likely" if p2p else "normal_likely",
            "protocol": "bt_mse" if p2p else None, "probability": 0.95 if p2p else 0.01, "decided_at_packet": 3,
            "decided_at": 1e9 + i + 0.01, "reasons": ["x=1"], "families": ["randomness"] if p2p else [],
            "score_path": [[1, 0.5], [3, 0.95 if p2p else 0.01]],
        })
        evs.append({"uid": uid, "proto": "tcp", "orig_h": f"10.0.0.{i % 20}", "orig_p": 40000 + i,
                    "resp_h": f"192.0.2.{i % 200}", "resp_p": 443, "ts": 1e9 + i, "sizes": [300, -300, 124, -20],
                    "bursts": [300, -300, 124, -20], "orig_heads": [bytes(range(64)).hex()], "resp_heads": []})
    hosts = [{"type": "host", "ts": 1e9 + n, "host": f"10.0.0.{j}", "label": "p2p_host", "score": 3.0,
              "probability": 0.95, "reasons": ["p2p_flows=1.0"]} for j in range(20)]
    return flows + hosts, evs


def test_large_input_details_only_top_n_and_aggregates_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "FLOW_TABLE_LIMIT", 500)
    recs, evs = _synthetic(2000)
    v, e = tmp_path / "v.jsonl", tmp_path / "e.jsonl"
    v.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    e.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in evs))
    html = build_report(verdicts=str(v), evidence=str(e), top=7, top_hosts=3)
    assert html.count('class="card flow') == 7 + 2  # top 7 + the default comparison pair
    assert html.count('class="card host"') == 3
    assert 'id="flow-aggregate"' in html and 'id="flow-table"' not in html


def test_repeated_uids_in_concatenated_verdicts_stay_apart(tmp_path):
    recs, _ = _synthetic(3)
    flows = [r for r in recs if r["type"] == "flow"]
    v = tmp_path / "v.jsonl"
    v.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in flows + flows))
    html = build_report(verdicts=str(v))
    assert "C00000000000000000~2" in html


# ---------------------------------------------------------------------------- CLI
def test_cli_without_input_is_an_input_error(capsys):
    assert main_report(["-o", "/dev/null"]) == 2
    assert "nothing to report" in capsys.readouterr().err


def test_cli_rejects_a_malformed_compare(capsys):
    assert main_report(["--compare", "onlyone", "x.pcap"]) == 1
    assert "UID1,UID2" in capsys.readouterr().err


def test_cli_names_a_bad_verdicts_line(tmp_path, capsys):
    v = tmp_path / "v.jsonl"
    v.write_text('{"type":"host","host":"10.0.0.1","ts":1,"label":"unknown","score":0,"probability":0.5,"reasons":[]}\nnot json\n')
    assert main_report(["--verdicts", str(v), "-o", str(tmp_path / "r.html")]) == 2
    assert f"{v}:2: not JSON" in capsys.readouterr().err


def test_cli_writes_the_file(tmp_path, mse_flow):
    pcap, _ = mse_flow
    out = tmp_path / "r.html"
    assert main_report(["-q", pcap, "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert not list(Path(tmp_path).glob("*.tmp*"))
