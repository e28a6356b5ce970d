"""Round trips for every v1 type and nested containers, negative cases with precise
messages, and fuzzing: arbitrary input raises WireError and nothing else."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.wire import v1
from msewatch.wire.v1 import Count, EnumValue, Event, Port, Timespan, WireError

UTC = dt.timezone.utc

# ----------------------------------------------------------------------------- strategies

counts = st.integers(0, 2**64 - 1).map(Count)
integers = st.integers(-(2**63), 2**63 - 1)
reals = st.floats(allow_nan=False, allow_infinity=False)
timespans = st.integers(-(2**63), 2**63 - 1).map(Timespan)
# Broker's timestamps have millisecond resolution on the wire
timestamps = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
strings = st.text()
enums = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)?", fullmatch=True).map(EnumValue)
addresses = st.ip_addresses()
subnets = st.one_of(
    st.builds(lambda a, n: ipaddress.ip_network(f"{a}/{n}", strict=False), st.ip_addresses(v=4), st.integers(0, 32)),
    st.builds(lambda a, n: ipaddress.ip_network(f"{a}/{n}", strict=False), st.ip_addresses(v=6), st.integers(0, 128)),
)
ports = st.builds(Port, st.integers(0, 65535), st.sampled_from(["tcp", "udp", "icmp", "?"]))

scalars = st.one_of(
    st.none(), st.booleans(), counts, integers, reals, timespans, timestamps, strings, enums, addresses, subnets, ports
)
# set members and table keys must be hashable: vectors appear as tuples there
hashables = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4).map(tuple), st.frozensets(inner, max_size=4)),
    max_leaves=12,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.frozensets(hashables, max_size=5),
        st.dictionaries(hashables, inner, max_size=5),
    ),
    max_leaves=25,
)


def roundtrip_text(value):
    text = v1.dumps_value(value)
    back = v1.loads_value(text)
    return text, back


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "name,strategy",
    [
        ("none", st.none()),
        ("boolean", st.booleans()),
        ("count", counts),
        ("integer", integers),
        ("real", reals),
        ("timespan", timespans),
        ("timestamp", timestamps),
        ("string", strings),
        ("enum-value", enums),
        ("address", addresses),
        ("subnet", subnets),
        ("port", ports),
        ("vector", st.lists(scalars, max_size=8)),
        ("set", st.frozensets(hashables, max_size=8)),
        ("table", st.dictionaries(hashables, scalars, max_size=8)),
    ],
)
def test_every_type_round_trips(name, strategy):
    @settings(max_examples=150, deadline=None)
    @given(strategy)
    def check(value):
        text, back = roundtrip_text(value)
        assert json.loads(text)["@data-type"] == name
        assert back == value
        # type-exact: re-encoding what was decoded gives the same bytes
        assert v1.dumps_value(back) == text

    check()


@settings(max_examples=300, deadline=None)
@given(values)
def test_nested_containers_round_trip_byte_identically(value):
    text, back = roundtrip_text(value)
    assert back == value
    assert v1.dumps_value(back) == text


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1),
    st.text(min_size=1),
    st.lists(values, max_size=6),
    st.none() | st.lists(st.tuples(counts, values), max_size=3),
)
def test_events_round_trip(topic, name, args, metadata):
    ev = Event(name, args, metadata)
    text = v1.encode_event_message(topic, ev)
    got_topic, got = v1.decode_event_message(text)
    assert (got_topic, got) == (topic, ev)
    assert v1.encode_event_message(got_topic, got) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1))
def test_timespan_written_in_coarsest_exact_unit(ns):
    text = str(Timespan(ns))
    assert v1.parse_timespan(text) == ns
    unit = text.lstrip("-0123456789")
    assert unit in ("ns", "us", "ms", "s")


def test_timespan_input_forms():
    p = v1.parse_timespan
    assert p("1500ms") == p("1.5s") == p("+1.5s") == 1_500_000_000
    assert p("-2us") == -2_000
    assert p("3min") == 180 * 10**9 and p("2h") == 7200 * 10**9 and p("1d") == 86400 * 10**9
    assert p("0.5ns") == 0  # below Broker's resolution: rounded (half to even)
    assert p("1.0000000015s") == 1_000_000_002
    with pytest.raises(ValueError):
        p("9223372036854775808ns")


def test_timestamp_input_forms_and_output_format():
    parse = v1.DEFAULT.parse_timestamp
    want = dt.datetime(2026, 11, 22, 2, 26, 56, 152000, tzinfo=UTC)
    assert parse("2026-11-22T02:26:56.152") == want  # as Zeek sends it
    assert parse("2026-11-22T02:26:56.152Z") == want
    assert parse("2026-11-22T03:26:56.152+01:00") == want
    assert parse("2026-11-21T21:26:56.152-0500") == want
    assert parse("2026-11-22T02:26:56.152999") == want.replace(microsecond=152999)
    assert parse("2026-11-22T02:26:56.152999999") == want.replace(microsecond=152999)
    assert parse("2026-11-22T02:26:56") == want.replace(microsecond=0)
    # output: milliseconds, truncated, no offset (Broker's format/json.cc)
    assert v1.DEFAULT.format_timestamp(want.replace(microsecond=152999)) == "2026-11-22T02:26:56.152"
    assert v1.DEFAULT.format_timestamp(want.astimezone(dt.timezone(dt.timedelta(hours=5)))) == "2026-11-22T02:26:56.152"


def test_timestamps_in_another_zone_when_zeek_runs_there():
    cet = dt.timezone(dt.timedelta(hours=1))
    codec = v1.Codec(naive_tz=cet)
    value = codec.decode_value({"@data-type": "timestamp", "data": "2026-11-22T03:26:56.152"})
    assert value == dt.datetime(2026, 11, 22, 2, 26, 56, 152000, tzinfo=UTC)
    assert codec.encode_value(value)["data"] == "2026-11-22T03:26:56.152"


def test_count_and_integer_are_distinct_python_types():
    assert v1.encode_value(Count(3)) == {"@data-type": "count", "data": 3}
    assert v1.encode_value(3) == {"@data-type": "integer", "data": 3}
    assert v1.encode_value(v1.Typed("count", 3)) == {"@data-type": "count", "data": 3}
    assert v1.encode_value(dt.timedelta(milliseconds=1500)) == {"@data-type": "timespan", "data": "1500ms"}


def test_reals_always_carry_a_fraction_for_brokers_parser():
    for x in (1.0, 0.1, 1e-7, 5e-324, 1e300, -0.0, 123456.789):
        text = v1.dumps_value(x)
        data = text.split('"data":')[1][:-1]
        assert "." in data or "e" in data
        assert v1.loads_value(text) == x


# ----------------------------------------------------------------------------- negative cases

BAD = [
    ({"@data-type": "count", "data": -3}, "data: count must be a non-negative integer, got -3"),
    ({"@data-type": "count", "data": 1.0}, "data: count must be a non-negative integer, got 1.0"),
    ({"@data-type": "count", "data": True}, "count must be a non-negative integer, got True"),
    ({"@data-type": "count", "data": 2**64}, "count must be below 2**64"),
    ({"@data-type": "count", "data": "1"}, "count must be a non-negative integer, got '1'"),
    ({"@data-type": "integer", "data": 1.0}, "integer must be a JSON integer, got 1.0"),
    ({"@data-type": "integer", "data": 2**63}, "integer must fit in 64 bits"),
    ({"@data-type": "integer", "data": False}, "integer must be a JSON integer"),
    ({"@data-type": "real", "data": "1.0"}, "real must be a JSON number"),
    ({"@data-type": "real", "data": True}, "real must be a JSON number"),
    ({"@data-type": "boolean", "data": 1}, "boolean must be true or false, got 1"),
    ({"@data-type": "none", "data": None}, "none must be {}"),
    ({"@data-type": "none", "data": {"a": 1}}, "none must be {}"),
    ({"@data-type": "timespan", "data": "1.5"}, "timespan must look like"),
    ({"@data-type": "timespan", "data": 1500}, "timespan must be a string"),
    ({"@data-type": "timespan", "data": "1 s"}, "timespan must look like"),
    ({"@data-type": "timestamp", "data": "oops"}, "timestamp must be ISO 8601"),
    ({"@data-type": "timestamp", "data": "2022-13-01T00:00:00.000"}, "invalid timestamp"),
    ({"@data-type": "timestamp", "data": "2022-02-30T00:00:00.000"}, "invalid timestamp"),
    ({"@data-type": "timestamp", "data": 1650000000}, "timestamp must be an ISO 8601 string"),
    ({"@data-type": "string", "data": 3}, "string must be a JSON string, got 3"),
    ({"@data-type": "enum-value", "data": ""}, "enum-value must be a non-empty"),
    ({"@data-type": "address", "data": "10.0.0.0/8"}, "address must be an IPv4 or IPv6"),
    ({"@data-type": "address", "data": "foo"}, "address must be an IPv4 or IPv6"),
    ({"@data-type": "address", "data": "fe80::1%eth0"}, "address must be an IPv4 or IPv6"),
    ({"@data-type": "subnet", "data": "foo"}, "subnet must be"),
    ({"@data-type": "subnet", "data": "10.0.0.0/64"}, "subnet must be"),
    ({"@data-type": "subnet", "data": "10.0.0.1"}, "subnet must be"),
    ({"@data-type": "port", "data": "70000/tcp"}, "port must be"),
    ({"@data-type": "port", "data": "80/sctp"}, "port must be"),
    ({"@data-type": "port", "data": "80"}, "port must be"),
    ({"@data-type": "port", "data": "-1/tcp"}, "port must be"),
    ({"@data-type": "port", "data": 80}, "port must be"),
    ({"@data-type": "vector", "data": {}}, "vector must be a JSON array"),
    ({"@data-type": "set", "data": "x"}, "set must be a JSON array"),
    ({"@data-type": "table", "data": {}}, "table must be a JSON array"),
    ({"@data-type": "frob", "data": 1}, "data: unknown @data-type, got 'frob'"),
    ({"@data-type": 1, "data": 1}, "unknown @data-type"),
    ({"data": 1}, "value must be"),
    ({"@data-type": "count", "data": 1, "extra": 2}, "value must be"),
    ([1], "value must be"),
]


@pytest.mark.parametrize("obj,message", BAD)
def test_bad_values_raise_wireerror_naming_the_problem(obj, message):
    with pytest.raises(WireError) as e:
        v1.decode_value(obj)
    assert message in str(e.value)


def test_error_path_points_into_nested_data():
    obj = {
        "@data-type": "vector",
        "data": [
            {"@data-type": "count", "data": 1},
            {"@data-type": "count", "data": 1},
            {"@data-type": "vector", "data": [{"@data-type": "string", "data": "x"}, {"@data-type": "count", "data": -3}]},
        ],
    }
    with pytest.raises(WireError) as e:
        v1.decode_value(obj)
    assert str(e.value) == "data[2].data[1]: count must be a non-negative integer, got -3"
    assert e.value.path == "data[2].data[1]"


def test_error_path_in_tables_and_duplicates():
    table = {
        "@data-type": "table",
        "data": [{"key": {"@data-type": "string", "data": "a"}, "value": {"@data-type": "port", "data": "x"}}],
    }
    with pytest.raises(WireError, match=r"^data\[0\]\.value: port must be"):
        v1.decode_value(table)
    dup = {"@data-type": "set", "data": [{"@data-type": "integer", "data": 1}, {"@data-type": "integer", "data": 1}]}
    with pytest.raises(WireError, match=r"^data\[1\]: duplicate set member"):
        v1.decode_value(dup)
    entry = {"@data-type": "table", "data": [{"key": {"@data-type": "integer", "data": 1}}]}
    with pytest.raises(WireError, match=r"table entry must be"):
        v1.decode_value(entry)


@pytest.mark.parametrize(
    "text,message",
    [
        ("How is it going?", "malformed JSON"),
        ("", "malformed JSON"),
        ("[1,2", "malformed JSON"),
        ('"just a string"', "must be a JSON object"),
        ('{"type":"frob"}', "message type must be data-message, ack or error"),
        ('{"type":"ack","endpoint":1,"version":"x"}', "ack needs string endpoint and version"),
        ('{"type":"error","code":"x"}', "error needs string code and context"),
        ('{"type":"data-message","@data-type":"count","data":1}', "topic must be a string"),
        ('{"type":"data-message","topic":"t","@data-type":"count","data":1,"x":1}', "exactly type, topic"),
        (b"\xff\xfe", "malformed JSON"),
    ],
)
def test_bad_messages(text, message):
    with pytest.raises(WireError, match=message):
        v1.decode_message(text)


@pytest.mark.parametrize(
    "value,message",
    [
        ({"@data-type": "count", "data": 1}, "a Zeek event is a vector"),
        ([Count(2), Count(1), ["e", []]], r"data\[0\]: event format must be count 1"),
        ([1, Count(1), ["e", []]], r"data\[0\]: event format must be count 1"),
        ([Count(1), Count(2), ["e", []]], r"data\[1\]: message type must be count 1"),
        ([Count(1), Count(1), ["e"]], r"data\[2\]: event must be a vector"),
        ([Count(1), Count(1), [EnumValue("e"), []]], "event name must be a string"),
        ([Count(1), Count(1), ["e", "x"]], "event arguments must be a vector"),
        ([Count(1), Count(1), ["e", [], [[1, 2]]]], "metadata entry must be"),
        ([Count(1), Count(1), ["e", [], 5]], "event metadata must be a vector"),
    ],
)
def test_bad_events(value, message):
    with pytest.raises(WireError, match=message):
        v1.event_from_value(value)


def test_bad_subscriptions_and_encodes():
    with pytest.raises(WireError):
        v1.decode_subscription('{"a":1}')
    with pytest.raises(WireError):
        v1.decode_subscription('["a", 1]')
    with pytest.raises(WireError):
        v1.encode_subscription([""])
    assert v1.encode_subscription([]) == "[]"
    assert v1.encode_subscription(["zeek/msewatch/evidence"]) == '["zeek/msewatch/evidence"]'
    for bad in (float("nan"), float("inf"), object(), Count, b"bytes"):
        with pytest.raises(WireError):
            v1.encode_value(bad)
    with pytest.raises(WireError):
        v1.encode_value(v1.Typed("count", -1))
    with pytest.raises(WireError):
        v1.encode_data_message("t", "\ud800")  # lone surrogate: not UTF-8


def test_deep_nesting_is_an_error_not_a_crash():
    obj: dict = {"@data-type": "count", "data": 1}
    for _ in range(5000):
        obj = {"@data-type": "vector", "data": [obj]}
    with pytest.raises(WireError):
        v1.decode_value(obj)
    text = '{"@data-type":"vector","data":[' * 3000 + "]}" * 3000
    with pytest.raises(WireError):
        v1.decode_message('{"type":"data-message","topic":"t",' + text[1:])


# ----------------------------------------------------------------------------- fuzzing

TYPE_NAMES = sorted(v1.TYPES) + ["frob"]
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), st.text()
)


def typed_like(children):
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=3),
        st.fixed_dictionaries({"@data-type": st.sampled_from(TYPE_NAMES), "data": children}),
        st.fixed_dictionaries({"key": children, "value": children}),
    )


arbitrary_json = st.recursive(json_scalars, typed_like, max_leaves=30)


@settings(max_examples=600, deadline=None)
@given(arbitrary_json)
def test_arbitrary_json_values_raise_only_wireerror(obj):
    try:
        v1.decode_value(obj)
    except WireError:
        pass
    try:
        v1.event_from_value(obj)
    except WireError:
        pass


@settings(max_examples=400, deadline=None)
@given(arbitrary_json, st.text(max_size=10))
def test_arbitrary_messages_raise_only_wireerror(obj, topic):
    from msewatch.wire.events import evidence_from_event

    candidates = [obj, {"type": "data-message", "topic": topic, "@data-type": "vector", "data": obj}]
    if isinstance(obj, dict):
        candidates.append({"type": "data-message", "topic": topic, **obj})
    for c in candidates:
        text = json.dumps(c)
        try:
            msg = v1.decode_message(text)
            if isinstance(msg, v1.DataMessage):
                evidence_from_event(v1.event_from_value(msg.value))
        except WireError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_wireerror(raw):
    try:
        v1.decode_message(raw)
    except WireError:
        pass
