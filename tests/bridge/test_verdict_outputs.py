"""`msewatch run` also writes every verdict to the configured outputs (the JSON-lines
file that `msewatch annotate --verdicts` reads), and a failing output never stops it."""

import json
from pathlib import Path

from msewatch.bridge import VerdictOutputs
from msewatch.config import parse_config
from msewatch.engine import Engine, extract_evidence

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


def test_every_verdict_reaches_the_jsonl_output_and_zeek_alike(tmp_path):
    out = tmp_path / "verdicts.jsonl"
    cfg = parse_config({"outputs": {"verdicts_jsonl": str(out)}})
    evs = extract_evidence([CORPUS / "mse_rc4_libtorrent_transmission.pcap"], cfg)
    wrapped = VerdictOutputs(Engine(cfg), cfg.outputs, cfg.host.local_nets)
    returned = [v.to_dict() for ev in evs for v in wrapped.process_evidence(ev)]
    wrapped.close()
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == returned
    assert any(v["type"] == "flow" and v["protocol"] == "bt_mse" and v["label"] == "p2p_likely" for v in written)


def test_a_broken_suricata_socket_is_counted_not_fatal(tmp_path):
    cfg = parse_config({"outputs": {"suricata_socket": str(tmp_path / "no.sock"), "dataset_min_probability": 0.0}})
    evs = extract_evidence([CORPUS / "mse_rc4_transmission_libtorrent.pcap"], cfg)
    wrapped = VerdictOutputs(Engine(cfg), cfg.outputs, [])
    verdicts = [v for ev in evs for v in wrapped.process_evidence(ev)]
    assert any(v.label == "p2p_likely" for v in verdicts)
    assert wrapped.errors + wrapped._feedback.errors >= 1
