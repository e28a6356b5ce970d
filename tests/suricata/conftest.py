"""Shared fixtures for the Suricata tests: the real binary, the corpus and its labels."""
from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "bridge"))

from suri import CORPUS, SKIP_REASON, SURICATA  # noqa: E402

needs_suricata = pytest.mark.skipif(SURICATA is None, reason=SKIP_REASON)


def corpus_labels() -> dict[str, list[dict]]:
    """pcap name -> labelled flows (rows of labels.csv) for the pcaps that exist."""
    path = CORPUS / "labels.csv"
    out: dict[str, list[dict]] = defaultdict(list)
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if (CORPUS / row["pcap"]).exists():
                out[row["pcap"]].append(row)
    return dict(out)


@pytest.fixture(scope="session")
def labels() -> dict[str, list[dict]]:
    return corpus_labels()


@pytest.fixture(scope="session")
def corpus_eve(tmp_path_factory, labels):
    """suricata -r over every labelled corpus pcap with only our rules: pcap name -> events."""
    if SURICATA is None:
        pytest.skip(SKIP_REASON)
    from suri import run_pcap

    base = tmp_path_factory.mktemp("corpus-eve")
    return {name: run_pcap(CORPUS / name, base / Path(name).stem) for name in sorted(labels)}
