"""The accuracy bars of the issue, on the committed real-client corpus (tests/data/corpus).

The numbers below are the issue's bars verbatim; docs/evaluation.md explains the method.
A P2P class with no flows in the corpus yet is skipped with a message saying so; the MSE
class and the negatives must be present. These tests may fail while the engine is tuned:
that is their job, not a reason to move the bars.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from msewatch import evaluate as ev

# MSEWATCH_EVAL_CORPUS=DIR checks the bars on another generated corpus (e.g. a fresh generator run)
CORPUS = Path(os.environ.get("MSEWATCH_EVAL_CORPUS") or Path(__file__).parent / "data" / "corpus")

RECALL_BARS = {"bt_mse": 0.98, "bt_plain": 0.99, "utp": 0.99, "dht": 0.99, "tracker": 0.99}
FP_RATE_BAR = 0.005  # negatives (shadowsocks included) labelled p2p_likely / all negatives
MSE_MEDIAN_DECISION_PACKETS = 6  # payload packets

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report() -> ev.EvalReport:
    pcaps = sorted(CORPUS.glob("*.pcap"))
    if not pcaps or not (CORPUS / "labels.csv").is_file():
        pytest.fail(f"no labelled corpus in {CORPUS}")
    hosts = CORPUS / "hosts.csv"
    return ev.run_eval(pcaps, CORPUS / "labels.csv", hosts if hosts.is_file() else None)


def _show(flows: list[dict], limit: int = 20) -> str:
    lines = [
        f"  {d['pcap']} {d['proto']} {d['orig_h']}:{d['orig_p']} -> {d['resp_h']}:{d['resp_p']} "
        f"truth={d.get('truth')} got={d.get('label')}/{d.get('protocol')} {' '.join(d.get('reasons') or [])}"
        for d in flows[:limit]
    ]
    return "\n".join(lines)


def test_the_corpus_holds_mse_flows_and_negatives(report):
    assert report.classes["bt_mse"].flows > 0, "no bt_mse flow in the corpus: the MSE bar cannot be measured"
    assert report.classes["normal"].flows > 0, "no negative flow in the corpus: the FP bar cannot be measured"


@pytest.mark.parametrize("cls", sorted(RECALL_BARS))
def test_recall_bar(report, cls):
    c = report.classes[cls]
    if c.flows == 0:
        if cls == "bt_mse":
            pytest.fail("class bt_mse is absent from the corpus; it must be there")
        pytest.skip(f"class {cls} is absent from the corpus (no labelled flows yet)")
    missed = [m for m in report.misses if m["truth"] == cls]
    assert c.recall >= RECALL_BARS[cls], (
        f"{cls}: recall {c.detected}/{c.flows} = {c.recall:.4f} < {RECALL_BARS[cls]}; missed:\n{_show(missed)}"
    )


def test_false_positive_rate_on_negatives(report):
    n = report.classes["normal"]
    assert n.flows > 0, "no negative flows in the corpus"
    assert n.fp_rate <= FP_RATE_BAR, (
        f"FP rate {n.false_positive}/{n.flows} = {n.fp_rate:.4f} > {FP_RATE_BAR}; "
        f"false positives:\n{_show(report.false_positives)}"
    )


def test_negatives_include_the_fully_encrypted_proxy(report):
    if "shadowsocks" not in report.negatives_by_protocol:
        pytest.skip("no shadowsocks flows in the corpus yet: the FP bar does not cover the encrypted proxy")
    assert report.negatives_by_protocol["shadowsocks"]["flows"] > 0


def test_no_normal_host_is_labelled_p2p_host(report):
    h = report.hosts
    if not h["normal_hosts"]:
        pytest.skip("no normal_host rows in hosts.csv")
    assert not h["normal_hosts_flagged"], f"normal hosts flagged p2p_host: {h['normal_hosts_flagged']}"


def test_every_p2p_host_is_flagged(report):
    h = report.hosts
    if not h["p2p_hosts"]:
        pytest.skip("no p2p_host rows in hosts.csv")
    assert not h["p2p_hosts_missed"], f"p2p hosts never flagged p2p_host: {h['p2p_hosts_missed']}"


def test_median_mse_decision_within_the_first_payload_packets(report):
    c = report.classes["bt_mse"]
    assert c.flows > 0, "class bt_mse is absent from the corpus; it must be there"
    med = c.decision_packets["median"]
    assert med is not None, "no MSE flow was decided p2p_likely"
    assert med <= MSE_MEDIAN_DECISION_PACKETS, (
        f"median decision for MSE flows at payload packet {med} > {MSE_MEDIAN_DECISION_PACKETS}"
    )


def test_the_bars_reported_by_msewatch_eval_are_these_bars():
    assert ev.BARS == {
        **{f"recall.{c}": v for c, v in RECALL_BARS.items()},
        "fp_rate.normal": FP_RATE_BAR,
        "normal_hosts_flagged": 0,
        "p2p_hosts_missed": 0,
        "median_packets.bt_mse": MSE_MEDIAN_DECISION_PACKETS,
    }
