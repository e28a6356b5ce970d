"""The compiled codec of the bridge's two hot messages (msewatch/_wire.c) against the Python
one (wire/events.py): the decoder returns exactly what the Python path returns, or None and
leaves the message to it, for both evidence versions (1: typed vectors, 2: packed strings); the encoder's bytes are encode_verdict's. Checked on every corpus
flow and on messages bent at random (a leaf replaced, spaces, reordered keys, escapes,
numbers and timestamps of every form), and on the 16 MiB message the budget bounds."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch import compiled
from msewatch.engine import Engine, extract_evidence
from msewatch.evidence import FlowEvidence, FlowKey
from msewatch.verdict import FlowVerdict
from msewatch.wire import events, v1
from msewatch.wire.v1 import WireError

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
TOPIC = "zeek/msewatch/evidence"
VTOPIC = "zeek/msewatch/verdict"
VERSIONS = (1, 2)


def message(ev: FlowEvidence, version: int) -> str:
    return v1.encode_event_message(TOPIC, events.evidence_to_event(ev, version))


@pytest.fixture(scope="module")
def fast():
    assert compiled.module("_wire") is not None, compiled.status("_wire", "wire codec")  # CI builds it
    return events._compiled_codec(v1.DEFAULT)


@pytest.fixture(scope="module")
def corpus_evidence() -> list[FlowEvidence]:
    return extract_evidence(sorted(str(p) for p in CORPUS.glob("*.pcap")))


def reference(text: str | bytes):
    """What the Python path makes of a message: FlowEvidence, another value, or the error."""
    try:
        obj = v1.loads(text)
        ev = events.fast_evidence(obj)
        if ev is not None:
            return ev
        msg = v1.DEFAULT.decode_message(text)
        if isinstance(msg, v1.DataMessage):
            event = v1.event_from_value(msg.value)
            return events.evidence_from_event(event) if event.name == events.FLOW_EVIDENCE else event
        return msg
    except WireError as e:
        return ("error", str(e))


@pytest.mark.parametrize("version", VERSIONS)
def test_corpus_messages_decode_to_the_same_evidence(fast, corpus_evidence, version):
    for ev in corpus_evidence:
        text = message(ev, version)
        for raw in (text, text.encode(), bytearray(text.encode()), json.dumps(json.loads(text), indent=1)):
            got = fast[0].decode(raw)
            assert got is not None and got == reference(text) == ev.__class__(**{
                f: getattr(got, f) for f in FlowEvidence.__slots__}), ev.uid
            assert isinstance(got, FlowEvidence) and isinstance(got.key, FlowKey)


def _mutations(text: str, rng: random.Random) -> list[str]:
    obj = json.loads(text)
    leaves = []

    def walk(o):
        if isinstance(o, dict):
            if "data" in o and not isinstance(o["data"], (list, dict)):
                leaves.append(o)
            for x in o.values():
                walk(x)
        elif isinstance(o, list):
            for x in o:
                walk(x)

    walk(obj)
    out = []
    junk = [-3, 0, 1, 1.0, 2, True, False, None, "x", "", [], {}, "1/tcp", "65536/tcp", "06881/udp", "80/icmp",
            "99999ns", "1.5ms", "-5ns", "7s", "3min", "0s", "9223372036854775807ns", "9223372036854775808ns",
            "zz", "0g", "abc", "ab cd", "10.0.0.1/8", "::ffff:10.0.0.1", "fe80::1%eth0", "010.0.0.1",
            "2026-11-22T02:51:28", "2026-11-22T02:51:28.1", "2026-11-22T02:51:28.123456789", "2026-02-30T00:00:00",
            "2026-11-22T02:51:28Z", "2026-11-22T02:51:28+01:00", "0000-01-01T00:00:00", "٢٠٢٦-11-22T02:51:28",
            "١٢ns", "CÄfoo", "\u2028", 2 ** 63, -(2 ** 63), 2 ** 63 - 1, -(2 ** 63) - 1, 2 ** 64 - 1, 2 ** 64,
            "MSEWatch::flow_evidenc", "count", "vector", "MSEWatch::verdict",
            # version 2's packed strings, well-formed and not
            "1,-2", "-0", "01", "1,", ",1", ",", "1,,2", "+1", " 1", "1 ,2", "١,2", "1.5", "9223372036854775807",
            "-9223372036854775808", "9223372036854775808", "-9223372036854775809", "99999999999999999999",
            "0a1b,", "0A1B,", "0a1b", "0a1,", ",,", "0a,,ff,", "zz,", "0a 1b,", "-1"]
    for _ in range(6):
        o = json.loads(text)
        ls = []

        def walk2(x):
            if isinstance(x, dict):
                if "data" in x and not isinstance(x["data"], (list, dict)):
                    ls.append(x)
                for y in x.values():
                    walk2(y)
            elif isinstance(x, list):
                for y in x:
                    walk2(y)

        walk2(o)
        leaf = rng.choice(ls)
        kind = rng.randrange(5)
        if kind == 0:
            leaf["data"] = rng.choice(junk)
        elif kind == 1:
            leaf["@data-type"] = rng.choice(["integer", "count", "string", "timespan", "real", "boolean"])
        elif kind == 2:  # the other key order
            d = leaf.pop("@data-type")
            leaf["@data-type"] = d
        elif kind == 3:  # an element more or less in a vector
            vecs = []

            def walk3(x):
                if isinstance(x, dict) and isinstance(x.get("data"), list):
                    vecs.append(x["data"])
                if isinstance(x, dict):
                    for y in x.values():
                        walk3(y)
                elif isinstance(x, list):
                    for y in x:
                        walk3(y)

            walk3(o)
            v = rng.choice(vecs)
            if v and rng.random() < 0.5:
                v.pop(rng.randrange(len(v)))
            elif v:
                v.append(v[0])
        else:
            o[rng.choice(["type", "topic", "@data-type", "extra"])] = rng.choice(junk)
        out.append(json.dumps(o, separators=(",", ":")))
    # text-level bends: escapes, spaces, a trailing byte, a truncation
    out.append(text.replace('"uid"', '"uid"').replace("MSEWatch::flow_evidence", "MSEWatch::flow\\u005fevidence"))
    out.append(text.replace(",", ", ").replace(":", " : "))
    out.append(text + " ")
    out.append(text + "x")
    out.append(text[: rng.randrange(len(text))])
    out.append(text.replace('"data":1}', '"data":1.0}', 1))
    out.append(text.replace('"data":1}', '"data":true}', 1))
    out.append(text.replace('"data":1}', '"data":01}', 1))
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_bent_messages_decode_as_the_python_path_does(fast, corpus_evidence, version):
    rng = random.Random(7)
    n_fast = 0
    for ev in rng.sample(corpus_evidence, min(150, len(corpus_evidence))):
        text = message(ev, version)
        for bent in _mutations(text, rng):
            got = fast[0].decode(bent)
            if got is None:
                continue  # the Python path decides (tested below)
            n_fast += 1
            assert got == reference(bent), bent[:300]
    assert n_fast > 0


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1).filter(bool), max_size=8),
    spans=st.lists(st.integers(0, 2 ** 62), max_size=8),
    ts=st.floats(0, 4e9),
    heads=st.lists(st.binary(max_size=40), max_size=3),
    uid=st.text(max_size=12),
    version=st.sampled_from(VERSIONS),
)
def test_generated_evidence_decodes_as_the_python_path_does(fast, sizes, spans, ts, heads, uid, version):
    times = tuple(s / 1e9 for s in spans[: len(sizes)]) + (0.0,) * max(0, len(sizes) - len(spans))
    ev = FlowEvidence(key=FlowKey("udp", "fd00::1", 1, "192.0.2.1", 65535), uid=uid, community_id="1:x", ts=ts,
                      sizes=tuple(sizes), times=times, bursts=tuple(sizes[:3]), orig_heads=tuple(heads),
                      resp_heads=(), orig_pkts=2 ** 64 - 1, resp_pkts=0, handshake=False, closed=True, complete=True)
    try:
        text = message(ev, version)
    except WireError:
        return  # e.g. a lone surrogate in the uid
    got = fast[0].decode(text)
    if got is not None:
        assert got == reference(text)


def test_decode_evidence_message_is_the_same_with_and_without_the_compiled_codec(monkeypatch, corpus_evidence):
    rng = random.Random(3)
    texts = []
    for ev in rng.sample(corpus_evidence, 40):
        for version in VERSIONS:
            text = message(ev, version)
            texts += [text, *_mutations(text, rng)]

    def run():
        out = []
        for t in texts:
            try:
                out.append(events.decode_evidence_message(t, v1.Codec()))
            except WireError as e:
                out.append(("error", str(e)))
        return out

    fast_results = run()
    monkeypatch.setenv("MSEWATCH_PURE_PYTHON", "1")
    assert run() == fast_results


def test_verdicts_encode_to_the_same_bytes(fast, corpus_evidence):
    eng = Engine()
    n = 0
    for ev in corpus_evidence:
        for v in eng.process_evidence(ev):
            want = events.encode_verdict(v, VTOPIC).encode()
            assert events.encode_verdict_bytes(v, VTOPIC) == want
            if isinstance(v, FlowVerdict):
                assert fast[1].encode(v, VTOPIC) == want
                n += 1
    assert n >= len(corpus_evidence)


@settings(max_examples=400, deadline=None)
@given(
    uid=st.text(max_size=8),
    reasons=st.lists(st.text(max_size=6), max_size=3),
    probability=st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 1 / 3, 0.1, 0.9999999, 1e-9, 0.5000005])),
    decided_at=st.one_of(st.floats(-2e9, 4e9), st.sampled_from([0.0, 0.0005, 1.9995, 1763778416.9999995,
                                                              -0.0004999, 1e-7, 253402300799.0])),
    packet=st.integers(-5, 2 ** 40),
    ports=st.tuples(st.integers(-1, 65536), st.integers(0, 65535)),
    proto=st.sampled_from(["tcp", "udp", "icmp"]),
    protocol=st.sampled_from(["bt_mse", "", "unknown", "dns"]),
    host=st.sampled_from(["10.0.0.1", "fd00::0:1", "::ffff:10.0.0.1", "not an address"]),
    topic=st.sampled_from([VTOPIC, "t", 'a"b', "é"]),
)
def test_generated_verdicts_encode_to_the_same_bytes(fast, uid, reasons, probability, decided_at, packet, ports, proto,
                                                     protocol, host, topic):
    v = FlowVerdict(key=FlowKey(proto, host, ports[0], "2001:db8::7", ports[1]), uid=uid, community_id="1:x", ts=1.0,
                    label="unknown", protocol=protocol, probability=probability, flow_probability=0.5, host_score=-3.0,
                    decided_at_packet=packet, decided_at=decided_at, reasons=tuple(reasons), families=())
    try:
        want = events.encode_verdict(v, topic).encode()
    except Exception as e:
        want = type(e)
    got = fast[1].encode(v, topic)
    if got is not None:
        assert got == want
    try:
        both = events.encode_verdict_bytes(v, topic)
    except Exception as e:
        both = type(e)
    assert both == want


def _big(n: int, bad_tail: bool = False, version: int = 1) -> str:
    ev = FlowEvidence(
        key=FlowKey("tcp", "10.0.0.1", 40000, "198.51.100.7", 6881), uid="Cbig", community_id="1:x", ts=1763778416.0,
        sizes=tuple(1 if i % 2 == 0 else -1 for i in range(n)), times=(0.0,) * n, bursts=(1, -1) * 40,
        orig_heads=(b"\x13BitTorrent protocol" * 20,) * 20, resp_heads=(), orig_pkts=n // 2, resp_pkts=n // 2,
        handshake=True, complete=True)
    text = message(ev, version)
    if bad_tail:  # a value the budget never reads: beyond the 1,025 sizes the decoder keeps
        if version == 1:
            text = text.replace('{"@data-type":"integer","data":-1}]', '{"@data-type":"integer","data":1.5}]', 1)
        else:
            text = text.replace(',-1"', ',1.5"', 1)
    return text


@pytest.mark.parametrize("version", VERSIONS)
def test_a_huge_message_is_read_within_the_budget(fast, version):
    text = _big(400_000, version=version)
    assert len(text) > (15 * 1024 * 1024 if version == 1 else events.MAX_GENERIC_MESSAGE)
    ev = events.decode_evidence_message(text)
    assert isinstance(ev, FlowEvidence)
    assert len(ev.sizes) == len(ev.times) == 1025 and len(ev.bursts) == 65 and len(ev.orig_heads) == 17
    assert len(ev.orig_heads[0]) == 257 and ev.orig_pkts == 200_000
    eng = Engine()
    (v, *_) = eng.process_evidence(ev)
    assert eng.stats.evidence_truncated == 1
    # what the budget keeps decides exactly as the whole message would
    small = message(FlowEvidence(**{
        **{f: getattr(ev, f) for f in FlowEvidence.__slots__}, "sizes": ev.sizes[:40], "times": ev.times[:40]}), version)
    eng2 = Engine()
    (w, *_) = eng2.process_evidence(events.decode_evidence_message(small))
    assert v.to_dict() == w.to_dict()


def test_values_beyond_the_budget_are_not_read_in_a_message_beyond_the_python_path(fast):
    big = _big(40_000, bad_tail=True)
    assert len(big) > events.MAX_GENERIC_MESSAGE
    ev = events.decode_evidence_message(big)
    assert isinstance(ev, FlowEvidence) and len(ev.sizes) == 1025


def test_a_packed_string_is_checked_whole_beyond_the_budget(fast):
    """Version 2: a packed string is one value; what lies beyond the budget in it is scanned
    (to count it) and checked, not kept."""
    big = _big(400_000, bad_tail=True, version=2)
    assert len(big) > events.MAX_GENERIC_MESSAGE
    with pytest.raises(WireError, match="larger messages than 1048576 bytes are read only"):
        events.decode_evidence_message(big)


@pytest.mark.parametrize("version", VERSIONS)
def test_smaller_messages_are_read_whole_as_the_python_path_reads_them(fast, version):
    """Below MAX_GENERIC_MESSAGE the compiled decoder keeps every value or leaves the message
    to the Python path: the same evidence, the same error."""
    text = _big(5000, version=version)
    assert len(text) < events.MAX_GENERIC_MESSAGE
    assert fast[0].decode(text) is None
    assert len(events.decode_evidence_message(text).sizes) == 5000
    error = (r"data\[8\]\.data\[4999\]: integer must be a JSON integer" if version == 1 else
             r"data\[8\] \(sizes\): must be signed decimal integers joined by ','")
    with pytest.raises(WireError, match=error):
        events.decode_evidence_message(_big(5000, bad_tail=True, version=version))


@pytest.mark.parametrize("version", VERSIONS)
def test_a_huge_message_that_is_not_flow_evidence_is_rejected_unread(fast, version):
    text = _big(400_000, version=version).replace("MSEWatch::flow_evidence", "MSEWatch::other_event")
    with pytest.raises(WireError, match="larger messages than 1048576 bytes are read only"):
        events.decode_evidence_message(text)
