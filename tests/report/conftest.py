"""Shared fixtures: the committed corpus and one labelled MSE flow in it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


def corpus_pcaps() -> list[str]:
    return sorted(str(p) for p in CORPUS.glob("*.pcap"))


@pytest.fixture(scope="session")
def mse_row() -> dict:
    """A bt_mse label row whose pcap is present."""
    with open(CORPUS / "labels.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["label"] == "p2p" and r["protocol"] == "bt_mse" and (CORPUS / r["pcap"]).exists():
                return r
    pytest.skip("no labelled bt_mse flow in tests/data/corpus")


@pytest.fixture(scope="session")
def mse_flow(mse_row) -> tuple[str, dict]:
    """(pcap path, flow verdict dict) of the labelled MSE flow, as the report's engine run sees it."""
    from msewatch.report.inputs import flow_key, from_pcaps

    pcap = str(CORPUS / mse_row["pcap"])
    inp = from_pcaps([pcap])
    want = (mse_row["proto"], mse_row["orig_h"], int(mse_row["orig_p"]), mse_row["resp_h"], int(mse_row["resp_p"]))
    for f in inp.flows:
        k = flow_key(f)
        if k == want or (k[0], k[3], k[4], k[1], k[2]) == want:
            return pcap, f
    pytest.fail(f"labelled MSE flow {want} not reported by the engine on {pcap}")
