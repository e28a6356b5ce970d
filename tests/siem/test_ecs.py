"""ECS output (`--format ecs`): every document validates against ECS's own field definitions
(data/ecs_fields.yaml, a subset of elastic/ecs ecs_flat.yml) and our msewatch.* template;
typed reasons; the contrib files agree with the code."""

from __future__ import annotations

import configparser
import json
import sys
from pathlib import Path

import orjson
import pytest

from msewatch import ecs
from msewatch.cli import main as cli_main
from msewatch.sinks.eve_annotate import main_annotate

from .ecs_check import check, emitted_ecs_fields, flatten

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "corpus"
CONTRIB = REPO / "contrib"
sys.path.insert(0, str(REPO / "tests" / "suricata"))
from suri import SURICATA, run_pcap  # noqa: E402

# A Suricata EVE sample for the converter's unit tests: one of each record kind the converter
# treats apart, shaped as Suricata 7 writes them, plus lines that are broken on purpose.
EVE_FLOW = {"timestamp": "2026-11-22T02:54:49.000000+0000", "flow_id": 1, "event_type": "flow",
            "src_ip": "10.77.0.14", "src_port": 32887, "dest_ip": "10.77.0.12", "dest_port": 6881,
            "proto": "TCP", "community_id": "1:8wYqEBlF+VUCp7oWelSTXpBn16I=",
            "flow": {"pkts_toserver": 12, "pkts_toclient": 10, "bytes_toserver": 2048, "bytes_toclient": 4096,
                     "start": "2026-11-22T02:54:47.496048+0000", "end": "2026-11-22T02:54:48.996048+0000",
                     "age": 1, "state": "closed", "reason": "shutdown", "alerted": True}}
EVE_ALERT = {"timestamp": "2026-11-22T02:54:47.600000+0000", "event_type": "alert", "src_ip": "10.77.0.14",
             "src_port": 32887, "dest_ip": "10.77.0.12", "dest_port": 6881, "proto": "TCP",
             "community_id": "1:8wYqEBlF+VUCp7oWelSTXpBn16I=",
             "alert": {"action": "allowed", "gid": 1, "signature_id": 9470001, "rev": 2,
                       "signature": "MSEWATCH BitTorrent MSE/PE handshake shape", "category": "Potential Corporate Privacy Violation",
                       "severity": 2},
             "app_proto": "failed",
             "flow": {"pkts_toserver": 3, "pkts_toclient": 2, "bytes_toserver": 700, "bytes_toclient": 600,
                      "start": "2026-11-22T02:54:47.496048+0000"}}
EVE_DNS = {"timestamp": "2026-11-22T02:54:50.100000+0000", "event_type": "dns", "src_ip": "fd00::1",
           "src_port": 5353, "dest_ip": "fd00::53", "dest_port": 53, "proto": "UDP", "app_proto": "dns",
           "dns": {"type": "query", "rrname": "example.org"}}
EVE_STATS = {"timestamp": "2026-11-22T02:55:00.000000+0000", "event_type": "stats", "stats": {"uptime": 8}}
EVE_CONFUSED = {"timestamp": 17, "event_type": "flow", "src_ip": {"x": 1}, "src_port": "80", "dest_ip": ["1.2.3.4"],
                "dest_port": 99999, "proto": ["TCP"], "community_id": ["x"], "flow": {"pkts_toserver": -3, "start": 5}}
VERDICT = {"type": "flow", "ts": 1795316087.496048, "uid": "C5YUyux3NQTJQGXfsd",
           "community_id": "1:8wYqEBlF+VUCp7oWelSTXpBn16I=", "proto": "tcp", "orig_h": "10.77.0.14", "orig_p": 32887,
           "resp_h": "10.77.0.12", "resp_p": 6881, "label": "p2p_likely", "protocol": "bt_mse", "probability": 0.9939,
           "flow_probability": 0.9985, "host_score": 0.8816, "decided_at_packet": 2, "decided_at": 1795316087.505789,
           "reasons": ["fully_encrypted=1.00", "popcount=3.85", "burst1=441", "peer_cache=1.00", "peer_cache=endpoint",
                       "client=-TR3000-"],
           "families": ["randomness", "handshake_shape", "peer_cache", "host_context"], "score_path": [[1, 0.98]]}


def _assert_valid(docs):
    bad = {i: p for i, d in enumerate(docs) if (p := check(d))}
    assert not bad, json.dumps({i: (bad[i], docs[i]) for i in list(bad)[:3]}, indent=1, default=str)


# ------------------------------------------------------------------------------ the checker
@pytest.mark.parametrize("mutate, problem", [
    (lambda d: d["source"].update(port="32887"), "source.port: '32887' is not a valid long"),
    (lambda d: d["source"].update(ip="10.77.0.300"), "source.ip: '10.77.0.300' is not a valid ip"),
    (lambda d: d.update({"@timestamp": "2026-11-22 02:54:47"}), "@timestamp: '2026-11-22 02:54:47' is not a valid date"),
    (lambda d: d["event"].update(kind="verdict"), "event.kind: 'verdict' is not an allowed value"),
    (lambda d: d["event"].update(category="network"), "event.category: ECS normalizes it to an array"),
    (lambda d: d["event"].update(type=["installation"]), "event.type: 'installation' is not expected"),
    (lambda d: d["network"].update(flavour="x"), "network.flavour: not an ECS field"),
    (lambda d: d["msewatch"].update(probability="0.99"), "msewatch.probability: '0.99' is not a valid float"),
    (lambda d: d["msewatch"].update(colour="red"), "msewatch.colour: not mapped"),
    (lambda d: d["msewatch"]["reasons"].update(burst1="441"), "msewatch.reasons.burst1: '441' is not a valid long"),
    (lambda d: d.pop("ecs"), "ecs.version: required, missing"),
])
def test_the_checker_rejects_what_ecs_would_not_take(mutate, problem):
    doc = ecs.verdict_to_ecs(VERDICT)
    assert check(doc) == []
    mutate(doc)
    assert any(p.startswith(problem) for p in check(doc)), check(doc)


# ------------------------------------------------------------------------------ verdicts
@pytest.fixture(scope="module")
def corpus_verdicts() -> tuple[list[dict], list[dict]]:
    """Flow and host verdicts of every corpus capture (one engine per capture, as eval does)."""
    from msewatch.report.inputs import from_pcaps

    inp = from_pcaps(sorted(str(p) for p in CORPUS.glob("*.pcap")))
    return inp.flows, inp.hosts


def test_every_corpus_verdict_becomes_a_valid_ecs_document(corpus_verdicts):
    flows, hosts = corpus_verdicts
    docs = [ecs.verdict_to_ecs(v) for v in flows + hosts]
    _assert_valid(docs)
    by_ds = {d["event"]["dataset"] for d in docs}
    assert by_ds == {"msewatch.flow", "msewatch.host"}
    alerts = [d for d in docs if d["event"]["kind"] == "alert"]
    assert alerts and all(d["msewatch"]["label"] in ("p2p_likely", "p2p_host") for d in alerts)


def test_flow_documents_carry_the_tuple_protocol_and_families(corpus_verdicts):
    flows, _ = corpus_verdicts
    for v in flows:
        d = ecs.flow_to_ecs(v)
        m = d["msewatch"]
        assert isinstance(m["protocol"], str) and m["protocol"]  # never null
        assert d["source"] == {"ip": v["orig_h"], "port": v["orig_p"]}
        assert d["destination"] == {"ip": v["resp_h"], "port": v["resp_p"]}
        assert d["network"]["transport"] == v["proto"] and d["network"]["community_id"] == v["community_id"]
        assert set(d["related"]["ip"]) == {v["orig_h"], v["resp_h"]}
        assert sorted(m["families_own"] + m["families_context"]) == sorted(v["families"])
        assert not set(m["families_context"]) - {"host_context", "peer_cache"}
        assert m["probability"] == v["probability"]
        if m["protocol"] in ("bt_mse", "bt_plain", "utp"):
            assert d["network"]["protocol"] == "bittorrent"
        if m["protocol"] == "unknown":
            assert "protocol" not in d["network"] and d["event"]["type"] == ["info"]
    assert any(ecs.flow_to_ecs(v)["msewatch"].get("client_family") == "transmission" for v in flows)


def test_host_documents_name_the_host(corpus_verdicts):
    _, hosts = corpus_verdicts
    for v in hosts[:50]:
        d = ecs.host_to_ecs(v)
        assert d["host"]["ip"] == [v["host"]] and d["related"]["ip"] == [v["host"]]
        assert d["event"]["category"] == ["host"] and d["msewatch"]["host_score"] == v["score"]


def test_every_reason_name_has_one_type_across_the_corpus(corpus_verdicts):
    """Elasticsearch maps a field once: a reason name must not be a number in one document
    and a string in another, unless it is declared (REASON_TYPES keeps declared names stable)."""
    flows, hosts = corpus_verdicts
    types: dict[str, set[str]] = {}
    for v in flows + hosts:
        for name, value in ecs.parse_reasons(v["reasons"]).items():
            for x in value if isinstance(value, list) else [value]:
                types.setdefault(name, set()).add(type(x).__name__)
    mixed = {n: t for n, t in types.items() if len(t) > 1}
    assert not mixed, f"declare these reason names in msewatch.ecs.REASON_TYPES: {mixed}"
    for name, t in types.items():
        declared = ecs.REASON_TYPES.get(name)
        if declared:
            assert t == {{"long": "int", "float": "float", "keyword": "str"}[declared]}, (name, t)


# ------------------------------------------------------------------------------ reasons
def test_reasons_become_typed_values():
    r = ecs.parse_reasons([
        "popcount=3.85", "burst1=441", "fully_encrypted=1.00", "first_bytes=160301", "info_hash=1830391234",
        "request=announce", "bt_len=68@4", "ratio=-2.5e-3", "big=123456789012345678901234567890", "zip=007",
        "flag=true", "off=false", "bare", "peer_cache=1.00", "peer_cache=endpoint", "n=1", "n=2", "=x", "odd=",
        "flows=12.0",
    ])
    assert r["popcount"] == 3.85 and r["burst1"] == 441 and r["fully_encrypted"] == 1.0
    assert isinstance(r["fully_encrypted"], float)
    assert r["first_bytes"] == "160301" and r["info_hash"] == "1830391234"  # declared keyword: never numbers
    assert r["request"] == "announce" and r["bt_len"] == "68@4"
    assert r["ratio"] == -0.0025
    assert r["big"] == "123456789012345678901234567890"  # beyond 64 bits: kept as written
    assert r["zip"] == "007"  # leading zeros: an identifier, not a number
    assert r["flag"] is True and r["off"] is False and r["bare"] is True
    assert r["peer_cache"] == ["1.00", "endpoint"]
    assert r["n"] == [1, 2]
    assert r["odd"] == "" and "" not in r
    assert r["flows"] == 12 and isinstance(r["flows"], int)
    assert ecs.parse_reasons(["m=1", "m=x"]) == {"m": ["1", "x"]}  # mixed types: all strings


def test_unknown_verdicts_say_unknown_and_keep_their_probability():
    v = dict(VERDICT, label="unknown", protocol=None, families=["randomness", "host_context"])
    d = ecs.flow_to_ecs(v)
    assert d["msewatch"]["protocol"] == "unknown" and d["msewatch"]["probability"] == 0.9939
    assert d["msewatch"]["families_own"] == ["randomness"] and d["msewatch"]["families_context"] == ["host_context"]
    assert d["event"]["kind"] == "event" and "protocol" not in d["network"]
    # the contract's lists win over the fallback once the engine writes them
    v2 = dict(v, families_own=["randomness", "handshake_shape"], families_context=[])
    assert ecs.flow_to_ecs(v2)["msewatch"]["families_context"] == []
    assert check(d) == []


# ------------------------------------------------------------------------------ EVE
def _eve_lines() -> list[bytes]:
    return [orjson.dumps(e) + b"\n" for e in (EVE_FLOW, EVE_ALERT, EVE_DNS, EVE_STATS, EVE_CONFUSED)] + [
        b"not json at all\n", b"[1, 2]\n", b'{"event_type":"flow","src_ip":"10.0.0.1"\n']


def test_eve_lines_become_valid_ecs_documents_one_per_line():
    docs = [ecs.eve_to_ecs(raw, ecs.msewatch_flow(VERDICT) if i < 2 else None) for i, raw in enumerate(_eve_lines())]
    _assert_valid(docs)
    flow, alert, dns, stats, confused, *broken = docs
    assert flow["event"]["type"] == ["connection", "end"] and flow["network"]["packets"] == 22
    assert flow["source"]["bytes"] == 2048 and flow["destination"]["packets"] == 10
    assert flow["event"]["duration"] == 1_500_000_000 and flow["msewatch"]["uid"] == VERDICT["uid"]
    assert alert["event"]["kind"] == "alert" and alert["event"]["severity"] == 2
    assert "bytes" not in alert["source"] and alert["network"]["bytes"] == 1300  # orientation unknown: totals only
    to_client = ecs.eve_to_ecs(orjson.dumps(dict(EVE_ALERT, direction="to_client")))
    assert to_client["source"]["bytes"] == 600 and to_client["destination"]["bytes"] == 700
    assert alert["rule"] == {"id": "9470001", "ruleset": "msewatch", "name": EVE_ALERT["alert"]["signature"],
                             "category": EVE_ALERT["alert"]["category"], "version": "2"}
    assert "protocol" not in alert["network"]  # app_proto "failed" names no protocol
    assert dns["network"]["protocol"] == "dns" and dns["network"]["type"] == "ipv6"
    assert stats["event"]["kind"] == "metric" and "category" not in stats["event"]
    assert "source" not in confused and "destination" not in confused
    for b, raw in zip(broken, _eve_lines()[5:]):
        assert b["event"]["kind"] == "pipeline_error" and b["event"]["original"] == raw.decode().rstrip("\n")
    for d, raw in zip(docs, _eve_lines()):
        assert d["event"]["original"] == raw.decode().rstrip("\n")  # nothing of the line is lost


def test_annotate_format_ecs_writes_every_line_once(tmp_path, capsys):
    # (the type-confused line is left out here: surviving it is the annotator's job, issue 11)
    lines = [x for x in _eve_lines() if x != orjson.dumps(EVE_CONFUSED) + b"\n"]
    eve, vfile, out = tmp_path / "eve.json", tmp_path / "v.jsonl", tmp_path / "out.json"
    eve.write_bytes(b"".join(lines))
    vfile.write_bytes(orjson.dumps(VERDICT) + b"\n")
    assert main_annotate([str(eve), "--verdicts", str(vfile), "--format", "ecs", "--out", str(out), "--stats"]) == 0
    docs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [d["event"]["original"] + "\n" for d in docs] == [x.decode() for x in lines]
    _assert_valid(docs)
    assert [d.get("msewatch", {}).get("uid") for d in docs[:2]] == [VERDICT["uid"]] * 2
    assert json.loads(capsys.readouterr().err)["annotated"] == 2


@pytest.mark.skipif(SURICATA is None, reason="suricata not installed")
def test_real_suricata_eve_annotated_as_ecs_validates(tmp_path):
    pcap = CORPUS / "swarm.pcap"
    run_pcap(pcap, tmp_path / "suri", extra={"outputs.1.eve-log.types": "[alert, flow, anomaly]"})
    out = tmp_path / "ecs.json"
    assert main_annotate([str(tmp_path / "suri" / "eve.json"), "--pcap", str(pcap), "--format", "ecs",
                          "--out", str(out)]) == 0
    lines = (tmp_path / "suri" / "eve.json").read_bytes().splitlines()
    docs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert len(docs) == len(lines)
    _assert_valid(docs)
    assert any(d["event"]["kind"] == "alert" and d["rule"]["ruleset"] == "msewatch" for d in docs)
    assert any("msewatch" in d and d["msewatch"]["label"] == "p2p_likely" for d in docs)


def test_the_committed_ecs_subset_is_exactly_what_the_output_uses(corpus_verdicts):
    """data/ecs_fields.yaml holds the fields msewatch writes, no more, no fewer."""
    flows, hosts = corpus_verdicts
    docs = [ecs.verdict_to_ecs(v) for v in flows + hosts]
    docs += [ecs.eve_to_ecs(raw, None) for raw in _eve_lines()]
    fields = ecs.ecs_definitions()["fields"]
    assert emitted_ecs_fields(docs) == {n for n, d in fields.items() if "set_by" not in d}


# ------------------------------------------------------------------------------ CLI wiring
def test_analyze_format_ecs(tmp_path):
    out = tmp_path / "v.json"
    pcap = CORPUS / "mse_rc4_libtorrent_transmission.pcap"
    assert cli_main(["analyze", "-q", "--no-progress", "--format", "ecs", str(pcap), "-o", str(out)]) == 0
    docs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    _assert_valid(docs)
    assert any(d["msewatch"].get("protocol") == "bt_mse" and d["event"]["kind"] == "alert" for d in docs)


def test_run_outputs_write_ecs_when_asked(tmp_path):
    from msewatch.bridge import VerdictOutputs
    from msewatch.config import parse_config
    from msewatch.engine import Engine, extract_evidence

    out = tmp_path / "verdicts.jsonl"
    cfg = parse_config({"outputs": {"verdicts_jsonl": str(out)}})
    evs = extract_evidence([CORPUS / "mse_rc4_libtorrent_transmission.pcap"], cfg)
    wrapped = VerdictOutputs(Engine(cfg), cfg.outputs, cfg.host.local_nets, verdict_format="ecs")
    returned = [v.to_dict() for ev in evs for v in wrapped.process_evidence(ev)]
    wrapped.close()
    docs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert docs == [ecs.verdict_to_ecs(v) for v in returned]
    _assert_valid(docs)


# ------------------------------------------------------------------------------ contrib files
def test_contrib_index_template_is_the_generated_one():
    path = CONTRIB / "elastic" / "msewatch-template.json"
    assert path.read_bytes() == ecs.template_json(), "regenerate: python -m msewatch.ecs template > " + str(path)


def test_ingest_pipeline_reads_fields_the_documents_have(corpus_verdicts):
    pipe = json.loads((CONTRIB / "elastic" / "msewatch-pipeline.json").read_text())
    flows, hosts = corpus_verdicts
    paths = {p for v in flows[:200] + hosts[:50] for p, _ in flatten(ecs.verdict_to_ecs(v))}
    used = set()
    for proc in pipe["processors"]:
        (kind, body), = proc.items()
        for key in ("field", "copy_from"):
            if key in body and kind not in ("set",):
                used.add(body[key])
    assert used and used <= paths, used - paths


def test_splunk_aliases_name_fields_the_documents_have(corpus_verdicts):
    """props.conf FIELDALIAS sources must be fields Splunk's KV_MODE=json extracts from our
    documents (nested keys joined with '.', arrays with '{}')."""
    flows, hosts = corpus_verdicts
    docs = [ecs.verdict_to_ecs(v) for v in flows[:200] + hosts[:50]]
    docs += [ecs.eve_to_ecs(orjson.dumps(e), None) for e in (EVE_FLOW, EVE_ALERT)]
    splunk = {p + ("{}" if isinstance(v, list) else "") for d in docs for p, v in flatten(d)}
    props = configparser.RawConfigParser(strict=True, delimiters=("=",))
    props.optionxform = str
    props.read(CONTRIB / "splunk" / "props.conf")
    assert props.sections()
    sources = set()
    for sec in props.sections():
        for key, val in props.items(sec):
            if key.startswith("FIELDALIAS-"):
                tokens = val.split()
                sources.update(tokens[i - 1] for i, t in enumerate(tokens) if t == "AS")
    assert sources and sources <= splunk, sources - splunk
    transforms = configparser.RawConfigParser(strict=True, delimiters=("=",))
    transforms.optionxform = str
    transforms.read(CONTRIB / "splunk" / "transforms.conf")
    referenced = {t.strip() for sec in props.sections() for k, v in props.items(sec)
                  if k.startswith("TRANSFORMS-") or k.startswith("REPORT-") for t in v.split(",")}
    assert referenced and referenced <= set(transforms.sections())
