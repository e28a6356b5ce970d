"""The msewatch events (docs/evidence.md) on the v1 wire."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.evidence import FlowEvidence, FlowKey
from msewatch.verdict import FlowVerdict, HostVerdict
from msewatch.wire import events, v1
from msewatch.wire.v1 import Count, Port, Timespan, WireError

UTC = dt.timezone.utc
TOPIC = "zeek/msewatch/evidence"


def sample_evidence(**kw) -> FlowEvidence:
    base = dict(
        key=FlowKey("tcp", "192.168.1.10", 51413, "2001:db8::7", 6881),
        uid="CHhAvVGS1DHFjwGM9",
        community_id="1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        ts=1763778416.152,
        sizes=(132, -310, 580, -20),
        times=(0.0, 0.012345, 0.5, 1.000001),
        bursts=(132, -310, 580, -20),
        orig_heads=(bytes(range(40)),),
        resp_heads=(b"\x13BitTorrent protocol",),
        orig_pkts=7,
        resp_pkts=5,
        orig_bytes=712,
        resp_bytes=330,
        duration=1.25,
        handshake=True,
        closed=False,
        complete=True,
    )
    base.update(kw)
    return FlowEvidence(**base)


def test_evidence_event_has_the_contract_argument_types_in_order():
    text = v1.encode_event_message(TOPIC, events.evidence_to_event(sample_evidence()))
    msg = json.loads(text)
    name = msg["data"][2]["data"][0]["data"]
    args = msg["data"][2]["data"][1]["data"]
    assert name == "MSEWatch::flow_evidence"
    assert [a["@data-type"] for a in args] == [t for _, t, _ in events.EVIDENCE_ARGS_V2]
    assert args[0]["data"] == 2
    assert args[4]["data"] == "51413/tcp" and args[6]["data"] == "6881/tcp"
    assert args[7]["data"] == "2025-11-22T02:26:56.152"
    assert args[8]["data"] == "132,-310,580,-20" == args[10]["data"]
    assert args[9]["data"] == "0,12345000,500000000,1000001000"
    assert args[11]["data"] == bytes(range(40)).hex() + ","
    assert args[12]["data"] == b"\x13BitTorrent protocol".hex() + ","
    assert args[17]["data"] == "1250ms"


def test_evidence_version_1_has_typed_vectors():
    text = v1.encode_event_message(TOPIC, events.evidence_to_event(sample_evidence(), version=1))
    args = json.loads(text)["data"][2]["data"][1]["data"]
    assert [a["@data-type"] for a in args] == [t for _, t, _ in events.EVIDENCE_ARGS]
    assert args[0]["data"] == 1
    assert [x["data"] for x in args[9]["data"]] == ["0s", "12345us", "500ms", "1000001us"]
    assert args[11]["data"][0]["data"] == bytes(range(40)).hex()


@pytest.mark.parametrize("version", [1, 2])
def test_evidence_round_trips_through_the_wire(version):
    ev = sample_evidence()
    text = v1.encode_event_message(TOPIC, events.evidence_to_event(ev, version))
    topic, event = v1.decode_event_message(text)
    assert topic == TOPIC
    assert events.evidence_from_event(event) == ev


@pytest.mark.parametrize("heads", [(), (b"",), (b"", b""), (b"\x00\xff", b""), (b"", b"\x01")])
def test_empty_heads_are_kept_apart_in_version_2(heads):
    """A head the snap length cut to nothing is an empty head, not no head."""
    ev = sample_evidence(orig_heads=heads, resp_heads=tuple(reversed(heads)))
    assert events.evidence_from_event(events.evidence_to_event(ev, 2)) == ev


@settings(max_examples=150, deadline=None)
@given(
    proto=st.sampled_from(["tcp", "udp"]),
    orig=st.ip_addresses().map(str),
    resp=st.ip_addresses().map(str),
    ports=st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
    sizes=st.lists(st.integers(-65535, 65535).filter(bool), max_size=32),
    heads=st.lists(st.binary(max_size=256), max_size=4),
    ms=st.integers(0, 4_000_000_000_000),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    version=st.sampled_from([1, 2]),
)
def test_any_evidence_round_trips(proto, orig, resp, ports, sizes, heads, ms, flags, version):
    times = tuple(i / 1000 for i in range(len(sizes)))  # values a nanosecond timespan carries exactly
    ev = sample_evidence(
        key=FlowKey(proto, orig, ports[0], resp, ports[1]),
        ts=ms / 1000,
        sizes=tuple(sizes),
        times=times,
        bursts=tuple(sizes[:8]),
        orig_heads=tuple(heads),
        resp_heads=tuple(reversed(heads)),
        handshake=flags[0],
        closed=flags[1],
        complete=flags[2],
    )
    _, event = v1.decode_event_message(v1.encode_event_message(TOPIC, events.evidence_to_event(ev, version)))
    assert events.evidence_from_event(event) == ev


def _args(version=1):
    return list(events.evidence_to_event(sample_evidence(), version).args)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda a: a.pop(), "takes 21 arguments, got 20"),
        (lambda a: a.__setitem__(0, Count(3)), r"\(version\): evidence version 3 is not supported \(this bridge speaks 1 and 2\)"),
        (lambda a: a.__setitem__(0, 1), r"data\[2\]\.data\[1\]\.data\[0\] \(version\): must be a count"),
        (lambda a: a.__setitem__(4, Port(1, "icmp")), r"\(orig_p\): port protocol must be tcp or udp"),
        (lambda a: a.__setitem__(6, Port(1, "udp")), r"\(resp_p\): port protocol udp differs"),
        (lambda a: a.__setitem__(8, [1, Count(2)]), r"data\[1\]\.data\[8\]\.data\[1\] \(sizes\): must be a integer"),
        (lambda a: a.__setitem__(9, [Timespan(0)]), r"\(times\): has 1 entries but sizes has 4"),
        (lambda a: a.__setitem__(11, ["zz"]), r"\(orig_heads\): head must be hex"),
        (lambda a: a.__setitem__(18, 1), r"\(handshake\): must be a boolean"),
        (lambda a: a.__setitem__(3, "10.0.0.1"), r"\(orig_h\): must be a address"),
    ],
)
def test_bad_evidence_is_a_precise_wireerror(mutate, message):
    a = _args()
    mutate(a)
    with pytest.raises(WireError, match=message):
        events.evidence_from_event(v1.Event(events.FLOW_EVIDENCE, a))


@pytest.mark.parametrize(
    "i,value,message",
    [
        (8, [132, -310, 580, -20], r"data\[2\]\.data\[1\]\.data\[8\] \(sizes\): must be a string, got list"),
        (8, "132,-310,,-20", r"\(sizes\): must be signed decimal integers joined by ',', got '132,-310,,-20'"),
        (8, "132,-310,580,-0", r"\(sizes\): must be signed decimal integers"),
        (8, "132,-310,580,020", r"\(sizes\): must be signed decimal integers"),
        (8, "132,-310,580,+20", r"\(sizes\): must be signed decimal integers"),
        (8, "132,-310,580,-20,", r"\(sizes\): must be signed decimal integers"),
        (8, "132,-310,580,9223372036854775808", r"\(sizes\): an integer exceeds 64 bits"),
        (8, "132,-310,580,٢", r"\(sizes\): must be signed decimal integers"),
        (9, "0,1,2", r"\(times\): has 3 entries but sizes has 4"),
        (9, "0,1,-2,3", r"\(times\): must be non-negative decimal nanoseconds joined by ','"),
        (9, "0,1,2,3.5", r"\(times\): must be non-negative decimal nanoseconds"),
        (10, "1 ,2", r"\(bursts\): must be signed decimal integers"),
        (11, "0a1b", r"\(orig_heads\): must be hex heads, each followed by ','"),
        (11, "0a1,", r"\(orig_heads\): must be hex heads"),
        (12, "0a 1b,", r"\(resp_heads\): must be hex heads"),
        (12, "zz,", r"\(resp_heads\): must be hex heads"),
    ],
)
def test_bad_version_2_evidence_is_a_precise_one_line_wireerror(i, value, message):
    a = _args(2)
    a[i] = value
    with pytest.raises(WireError, match=message) as e:
        events.evidence_from_event(v1.Event(events.FLOW_EVIDENCE, a))
    assert "\n" not in str(e.value)
    # the same message, whole, through every decoding path
    text = v1.encode_event_message(TOPIC, v1.Event(events.FLOW_EVIDENCE, a))
    with pytest.raises(WireError, match=message):
        events.decode_evidence_message(text)


def test_other_event_names_are_not_evidence():
    with pytest.raises(WireError, match="expected event MSEWatch::flow_evidence"):
        events.evidence_from_event(v1.Event("Test::ping", ()))


def sample_flow_verdict(**kw) -> FlowVerdict:
    base = dict(
        key=FlowKey("udp", "10.0.0.2", 6881, "198.51.100.9", 40000),
        uid="Cabc",
        community_id="1:x",
        ts=1763778416.0,
        label="p2p_likely",
        protocol=None,
        probability=0.97,
        flow_probability=0.9,
        host_score=1.5,
        decided_at_packet=3,
        decided_at=1763778416.25,
        reasons=("dht_krpc=1.00", "host_score=1.50"),
        families=("plaintext_signature",),
    )
    base.update(kw)
    try:
        return FlowVerdict(**base)
    except TypeError:  # the engine's FlowVerdict may carry extra fields (e.g. score_path)
        return FlowVerdict(**base, score_path=())


def test_flow_verdict_event_matches_the_contract_signature():
    text = events.encode_verdict(sample_flow_verdict(), "zeek/msewatch/verdict")
    topic, ev = v1.decode_event_message(text)
    assert topic == "zeek/msewatch/verdict" and ev.name == "MSEWatch::verdict"
    assert ev.args == (
        "Cabc",
        ipaddress.ip_address("10.0.0.2"),
        Port(6881, "udp"),
        ipaddress.ip_address("198.51.100.9"),
        Port(40000, "udp"),
        "p2p_likely",
        "unknown",  # protocol None -> "unknown" (contract 1)
        0.97,
        ["dht_krpc=1.00", "host_score=1.50"],
        dt.datetime(2025, 11, 22, 2, 26, 56, 250000, tzinfo=UTC),
        Count(3),
    )
    types = [a["@data-type"] for a in json.loads(text)["data"][2]["data"][1]["data"]]
    assert types == ["string", "address", "port", "address", "port", "string", "string", "real", "vector", "timestamp", "count"]
    assert '"data":0.970000' in text  # a real with a fraction, as Broker's parser wants


def test_flow_verdict_protocol_is_passed_through():
    _, ev = v1.decode_event_message(events.encode_verdict(sample_flow_verdict(protocol="bt_mse"), "t"))
    assert ev.args[6] == "bt_mse"


def test_host_verdict_event_matches_the_contract_signature():
    hv = HostVerdict(host="fd00::1", ts=1763778416.0, label="p2p_host", score=2.5, probability=0.92, reasons=("a=1",))
    text = events.encode_verdict(hv, "zeek/msewatch/verdict")
    _, ev = v1.decode_event_message(text)
    assert ev.name == "MSEWatch::host_verdict"
    assert ev.args == (
        ipaddress.ip_address("fd00::1"),
        "p2p_host",
        2.5,
        0.92,
        ["a=1"],
        dt.datetime(2025, 11, 22, 2, 26, 56, tzinfo=UTC),
    )
    assert events.verdict_key(hv) == "host fd00::1"


# ----------------------------------------------------------------------------- hot path == generic path


def generic_evidence(text: str):
    try:
        return events.evidence_from_event(v1.decode_event_message(text)[1])
    except WireError:
        return None


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(-(2**63), 2**63 - 1).filter(bool), max_size=8),
    spans=st.lists(st.integers(0, 2**62), max_size=8),
    mutate=st.integers(0, 200),
    junk=st.sampled_from([-3, 1.0, True, "x", None, [], {}, "1/tcp", "99999ns", "zz", "10.0.0.1/8", "١٢ns",
                          "", ",", "1,-2", "-0", "1,", "0a1b,", "0a1b", "٢", "9223372036854775808"]),
    version=st.sampled_from([1, 2]),
)
def test_fast_evidence_accepts_exactly_what_the_generic_path_accepts(sizes, spans, mutate, junk, version):
    ev = sample_evidence(sizes=tuple(sizes), times=tuple(s / 1e9 for s in spans[: len(sizes)]) + (0.0,) * max(0, len(sizes) - len(spans)))
    obj = json.loads(v1.encode_event_message(TOPIC, events.evidence_to_event(ev, version)))
    # overwrite one leaf "data" somewhere in the message with junk
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
    if mutate < len(leaves):
        leaves[mutate]["data"] = junk
    text = json.dumps(obj)
    fast = events.fast_evidence(json.loads(text))
    generic = generic_evidence(text)
    if fast is not None:
        assert fast == generic
    try:
        got = events.decode_evidence_message(text)
    except WireError:
        got = None
    assert (got if isinstance(got, FlowEvidence) else None) == generic


def test_fast_verdict_encoding_is_byte_identical_to_the_generic_codec():
    fv = sample_flow_verdict()
    hv = HostVerdict(host="::ffff:10.0.0.1", ts=1.5, label="unknown", score=-3.0, probability=1e-9, reasons=())
    for v in (fv, sample_flow_verdict(protocol="utp", probability=1 / 3, decided_at_packet=0), hv):
        assert events.encode_verdict(v, "t") == v1.encode_event_message("t", events.verdict_event(v))
