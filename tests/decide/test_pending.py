"""The live path keeps no verdict it has answered: Engine.process_evidence returns its verdicts
and queues nothing (before, every verdict of a bridge's lifetime stayed in Engine.pending)."""

from __future__ import annotations

from pathlib import Path

from msewatch.engine import Engine, extract_evidence

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


def test_process_evidence_returns_verdicts_and_queues_none():
    evs = extract_evidence([str(CORPUS / "mse_rc4_libtorrent_transmission.pcap")])
    eng = Engine()
    returned = [v for ev in evs for v in eng.process_evidence(ev)]
    assert len(returned) >= len(evs)
    assert eng.pending == []


def test_the_packet_path_still_queues_what_it_decides():
    from msewatch.engine import run_pcaps

    eng = Engine()
    out = list(run_pcaps([str(CORPUS / "dht_local.pcap")], eng))
    assert out and eng.pending == []
