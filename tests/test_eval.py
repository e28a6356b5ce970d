"""The metric arithmetic of `msewatch eval` on tiny hand-made verdict and label lists."""

from __future__ import annotations

import json

import pytest

from msewatch import evaluate as ev
from msewatch.evaluate import FlowPrediction, HostPrediction, HostRow, LabelRow, evaluate, percentile


def lab(i: int, truth: str, pcap: str = "a.pcap", client: str = "c1", server: str = "s1", proto: str = "tcp") -> LabelRow:
    if truth in ev.P2P_CLASSES:
        label, protocol = "p2p", truth
    elif truth == "unlabeled":
        label, protocol = "unlabeled", ""
    else:
        label, protocol = "normal", truth
    return LabelRow(pcap, proto, "10.0.0.1", 1000 + i, "10.0.0.2", 2000 + i, label, protocol, client, server)


def pred(i: int, label: str, protocol: str | None = None, pcap: str = "a.pcap", pkt: int | None = 3,
         secs: float | None = 0.5, reverse: bool = False, proto: str = "tcp") -> FlowPrediction:
    a, b = ("10.0.0.1", 1000 + i), ("10.0.0.2", 2000 + i)
    if reverse:
        a, b = b, a
    return FlowPrediction(pcap, proto, a[0], a[1], b[0], b[1], label, protocol, pkt, secs, ("why=1",))


P, N, U = ev.P2P_LIKELY, ev.NORMAL_LIKELY, ev.UNKNOWN


def test_confusion_matrix_counts_each_flow_once_in_its_true_row_and_predicted_column():
    labels = [lab(0, "bt_mse"), lab(1, "bt_mse"), lab(2, "bt_mse"), lab(3, "dht"), lab(4, "tls"), lab(5, "ssh")]
    preds = [pred(0, P, "bt_mse"), pred(1, P, "bt_plain"), pred(2, U), pred(3, P, "dht"), pred(4, N), pred(5, P, None)]
    rep = evaluate(preds, labels)
    cm = rep.confusion
    assert cm["bt_mse"]["p2p_likely/bt_mse"] == 1
    assert cm["bt_mse"]["p2p_likely/bt_plain"] == 1
    assert cm["bt_mse"]["unknown"] == 1
    assert cm["dht"]["p2p_likely/dht"] == 1
    assert cm["normal"]["normal_likely"] == 1
    assert cm["normal"]["p2p_likely/-"] == 1
    assert sum(sum(r.values()) for r in cm.values()) == len(labels)


def test_recall_counts_any_protocol_guess_and_guess_accuracy_is_separate():
    labels = [lab(i, "bt_mse") for i in range(4)]
    preds = [pred(0, P, "bt_mse"), pred(1, P, "bt_plain"), pred(2, P, None), pred(3, N)]
    c = evaluate(preds, labels).classes["bt_mse"]
    assert (c.flows, c.detected) == (4, 3)
    assert c.recall == pytest.approx(0.75)
    assert c.guess_accuracy == pytest.approx(1 / 3)


def test_precision_of_a_class_is_the_p2p_share_of_flows_predicted_with_that_guess():
    labels = [lab(0, "bt_mse"), lab(1, "tracker"), lab(2, "shadowsocks"), lab(3, "tls")]
    preds = [pred(0, P, "bt_mse"), pred(1, P, "bt_mse"), pred(2, P, "bt_mse"), pred(3, N)]
    rep = evaluate(preds, labels)
    mse = rep.classes["bt_mse"]
    assert mse.precision == pytest.approx(2 / 3)  # two real P2P flows among three called bt_mse
    assert mse.recall == 1.0
    assert mse.f1 == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert rep.classes["tracker"].precision is None  # nothing predicted as tracker
    assert rep.classes["tracker"].recall == 1.0
    assert rep.overall_p2p["precision"] == pytest.approx(2 / 3)
    assert rep.overall_p2p["recall"] == 1.0


def test_false_positive_rate_is_p2p_likely_negatives_over_all_negatives():
    labels = [lab(i, "tls") for i in range(8)] + [lab(8, "shadowsocks"), lab(9, "shadowsocks")]
    preds = [pred(i, N) for i in range(7)] + [pred(7, U), pred(8, P, "bt_mse"), pred(9, N)]
    rep = evaluate(preds, labels)
    neg = rep.classes["normal"]
    assert neg.flows == 10
    assert neg.false_positive == 1
    assert neg.fp_rate == pytest.approx(0.1)
    assert neg.unknown == 1
    assert neg.recall == pytest.approx(0.8)  # normal_likely share
    assert rep.negatives_by_protocol["shadowsocks"]["fp_rate"] == pytest.approx(0.5)
    assert rep.negatives_by_protocol["tls"]["fp_rate"] == 0.0
    assert [f["truth"] for f in rep.false_positives] == ["shadowsocks"]
    assert rep.unknown_share == pytest.approx(0.1)


def test_flows_without_label_rows_or_labelled_unlabeled_are_reported_not_counted():
    labels = [lab(0, "tls"), lab(1, "unlabeled")]
    preds = [pred(0, N), pred(1, P, "bt_mse"), pred(2, P, "dht")]
    rep = evaluate(preds, labels)
    assert rep.classes["normal"].flows == 1
    assert rep.classes["normal"].false_positive == 0
    assert rep.labelled_flows == 1
    assert sorted((d["orig_p"], d["why"]) for d in rep.unlabeled) == [(1001, "label unlabeled"), (1002, "no label row")]
    assert rep.unseen_labels == []


def test_reversed_orientation_still_matches_and_is_reported():
    labels = [lab(0, "utp", proto="udp"), lab(1, "dht", proto="udp")]
    preds = [pred(0, P, "utp", reverse=True, proto="udp"), pred(1, P, "dht", proto="udp")]
    rep = evaluate(preds, labels)
    assert rep.classes["utp"].detected == 1
    assert rep.unlabeled == []
    assert len(rep.orientation_mismatches) == 1
    m = rep.orientation_mismatches[0]
    assert (m["orig_h"], m["orig_p"], m["labelled_orig"]) == ("10.0.0.2", 2000, "10.0.0.1:1000")


def test_labels_match_per_pcap_only():
    labels = [lab(0, "bt_mse", pcap="a.pcap"), lab(0, "tls", pcap="b.pcap")]
    preds = [pred(0, P, "bt_mse", pcap="a.pcap"), pred(0, N, pcap="b.pcap")]
    rep = evaluate(preds, labels)
    assert rep.classes["bt_mse"].detected == 1
    assert rep.classes["normal"].detected == 1
    assert rep.classes["normal"].false_positive == 0


def test_a_label_row_the_engine_never_reported_is_a_miss_but_never_a_false_positive():
    labels = [lab(0, "bt_mse"), lab(1, "tls")]
    rep = evaluate([], labels, pcaps=["a.pcap"])
    assert rep.confusion["bt_mse"]["unseen"] == 1
    assert rep.classes["bt_mse"].recall == 0.0
    assert rep.classes["normal"].fp_rate == 0.0
    assert len(rep.unseen_labels) == 2
    assert [m["truth"] for m in rep.misses] == ["bt_mse"]


def test_label_rows_of_pcaps_not_evaluated_are_ignored():
    labels = [lab(0, "bt_mse", pcap="a.pcap"), lab(1, "dht", pcap="other.pcap")]
    rep = evaluate([pred(0, P, "bt_mse")], labels, pcaps=["dir/a.pcap"])
    assert rep.classes["dht"].flows == 0
    assert rep.unseen_labels == []


def test_a_split_flow_counts_each_engine_piece_under_the_same_label():
    labels = [lab(0, "dht", proto="udp")]
    preds = [pred(0, P, "dht", proto="udp"), pred(0, U, proto="udp")]
    c = evaluate(preds, labels).classes["dht"]
    assert (c.flows, c.detected, c.unknown) == (2, 1, 1)


def test_decision_latency_median_and_nearest_rank_p90_over_correctly_decided_flows():
    labels = [lab(i, "bt_mse") for i in range(11)]
    preds = [pred(i, P, "bt_mse", pkt=i + 1, secs=float(i)) for i in range(10)] + [pred(10, U, pkt=32)]
    c = evaluate(preds, labels).classes["bt_mse"]
    assert c.decision_packets == {"n": 10, "median": 5.5, "p90": 9}
    assert c.decision_seconds["median"] == pytest.approx(4.5)
    assert c.decision_seconds["p90"] == pytest.approx(8.0)


def test_percentile_is_nearest_rank():
    assert percentile([], 90) is None
    assert percentile([7], 90) == 7
    assert percentile(list(range(1, 101)), 90) == 90
    assert percentile([1, 2, 3], 50) == 2


def test_per_client_pair_recall_and_fp():
    labels = [lab(0, "bt_mse", client="lt", server="tr"), lab(1, "bt_mse", client="lt", server="tr"),
              lab(2, "bt_mse", client="tr", server="lt"), lab(3, "shadowsocks", client="ss-local", server="ss-server")]
    preds = [pred(0, P, "bt_mse"), pred(1, U), pred(2, P, "bt_mse"), pred(3, P, "bt_mse")]
    pairs = {(d["class"], d["client"], d["server"]): d for d in evaluate(preds, labels).client_pairs}
    assert pairs[("bt_mse", "lt", "tr")]["recall"] == 0.5
    assert pairs[("bt_mse", "tr", "lt")]["recall"] == 1.0
    assert pairs[("normal", "ss-local", "ss-server")]["fp_rate"] == 1.0


def test_host_result_every_p2p_host_flagged_and_no_normal_host_flagged():
    roles = [HostRow("a.pcap", "10.0.0.1", "p2p_host"), HostRow("a.pcap", "10.0.0.2", "p2p_host"),
             HostRow("a.pcap", "10.0.0.3", "p2p_host"), HostRow("b.pcap", "10.0.0.1", "normal_host"),
             HostRow("b.pcap", "10.0.0.9", "normal_host")]
    hosts = [
        HostPrediction("a.pcap", "10.0.0.1", "p2p_host", True),
        HostPrediction("a.pcap", "10.0.0.2", "unknown", True),  # flagged once, decayed: still an alert
        HostPrediction("b.pcap", "10.0.0.1", "normal_host", True),  # flagged at some point: counts
        HostPrediction("b.pcap", "10.0.0.5", "unknown", False),  # no role row
    ]
    rep = evaluate([], [], hosts, roles, pcaps=["a.pcap", "b.pcap"])
    h = rep.hosts
    assert (h["p2p_hosts"], h["p2p_hosts_flagged"]) == (3, 2)
    assert [m["host"] for m in h["p2p_hosts_missed"]] == ["10.0.0.3"]
    assert h["p2p_hosts_missed"][0]["final_label"] == "no verdict"
    assert [(m["pcap"], m["host"]) for m in h["normal_hosts_flagged"]] == [("b.pcap", "10.0.0.1")]
    assert [u["host"] for u in h["unlabelled_hosts"]] == ["10.0.0.5"]


def test_bars_report_absent_classes_and_failures():
    labels = [lab(0, "bt_mse"), lab(1, "bt_mse"), lab(2, "tls")]
    preds = [pred(0, P, "bt_mse", pkt=4), pred(1, U), pred(2, N)]
    bars = {b["bar"]: b for b in ev.check_bars(evaluate(preds, labels))}
    assert bars["recall.bt_mse"]["status"] == "fail"
    assert bars["recall.utp"]["status"] == "absent"
    assert bars["fp_rate.normal"]["status"] == "pass"
    assert bars["median_packets.bt_mse"]["status"] == "pass"


def test_report_is_json_ready_and_markdown_has_the_tables():
    labels = [lab(0, "bt_mse"), lab(1, "tls"), lab(2, "shadowsocks")]
    preds = [pred(0, P, "bt_mse"), pred(1, N), pred(2, P, "bt_mse"), pred(3, U)]
    rep = evaluate(preds, labels)
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["classes"]["normal"]["fp_rate"] == 0.5
    assert d["unlabeled"][0]["orig_p"] == 1003
    md = ev.report_markdown(rep)
    assert "| bt_mse | 1 | 1 | 1 |" in md
    assert "shadowsocks" in md and "Flows without a label row (1)" in md


def test_load_labels_rejects_unknown_labels_and_names_the_row(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text(",".join(ev.LABEL_COLUMNS) + "\n" + "a.pcap,tcp,1.1.1.1,1,2.2.2.2,2,maybe,tls,c,s\n")
    with pytest.raises(ev.EvalError, match=r"labels.csv:2: label must be"):
        ev.load_labels(p)
    p.write_text("pcap,proto\n")
    with pytest.raises(ev.EvalError, match="missing column"):
        ev.load_labels(p)


def test_main_eval_finds_labels_next_to_the_pcap_and_writes_json(tmp_path, capsys):
    import shutil
    from pathlib import Path

    corpus = Path(__file__).parent / "data" / "corpus"
    labelled = {r.pcap for r in ev.load_labels(corpus / "labels.csv")} if (corpus / "labels.csv").is_file() else set()
    pcaps = [p for p in sorted(corpus.glob("*.pcap"), key=lambda p: p.stat().st_size) if p.name in labelled]
    if not pcaps:
        pytest.skip("no labelled corpus pcap")
    pc = pcaps[0]
    shutil.copy(pc, tmp_path / pc.name)
    shutil.copy(corpus / "labels.csv", tmp_path / "labels.csv")
    out = tmp_path / "r.json"
    md = tmp_path / "r.md"
    rc = ev.main_eval([str(tmp_path / pc.name), "--json", str(out), "--markdown", str(md)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["pcaps"] == [pc.name]
    assert d["labelled_flows"] >= 1
    assert md.read_text().startswith("### msewatch evaluation")
    assert ev.main_eval([str(tmp_path / "missing.pcap")]) == 2
    (tmp_path / "labels.csv").unlink()
    assert ev.main_eval([str(tmp_path / pc.name)]) == 2
    assert "no labels file" in capsys.readouterr().err


def test_payload_less_flows_stay_in_recall_and_are_counted_apart():
    labels = [lab(i, "bt_mse") for i in range(4)]
    preds = [pred(0, P, "bt_mse"), pred(1, P, "bt_mse"), pred(2, U, pkt=0), pred(3, U, pkt=2)]
    rep = evaluate(preds, labels)
    c = rep.classes["bt_mse"]
    assert c.recall == 0.5
    assert c.no_payload == 1
    assert c.recall_with_payload == pytest.approx(2 / 3)
    assert [m["no_payload"] for m in rep.misses] == [True, False]
    assert "(no payload)" in ev.report_markdown(rep)
