"""Golden v1 messages, copied from their public sources, decode and re-encode byte-identically.

Sources (each golden below names its own):
  [F8]  /work/shared/PROTOCOL-FACTS.md §8: observed on a real Zeek 8.0.10 (compact JSON as sent)
  [F44] /work/shared/PROTOCOL-FACTS.md §4.4: the live example quoted from the Zeek docs
  [BJT] zeek/broker libbroker/broker/format/json.test.cc @ 3c64a311d802348f020eaf3eda3042d4d9cb4b1d
        (Broker's own v1 encoder baselines; the test strips whitespace, so they are compact)
  [BDOC] zeek/broker doc/web-socket.rst @ 44318525dad6b94c4a2b5678806670f601a036fa
        (pretty-printed in the doc; whitespace between tokens removed here)
  [ZCT] zeek/zeek-client tests/test_brokertypes.py @ 58cef3697a35b09da55176641b939690b00ac0c3
  [WST] zeek/zeek testing/btest/Files/ws/wstest.py @ 1191f6b66d6cef60d90b9fb57bc3f0b576284baf
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json

import pytest

from msewatch.wire import v1
from msewatch.wire.v1 import Ack, Count, DataMessage, EnumValue, ErrorMessage, Event, Port, Timespan

UTC = dt.timezone.utc

# ----------------------------------------------------------------------------- whole messages

GOLDEN_MESSAGES = [
    # [F8] ack from Zeek 8.0.10
    '{"type":"ack","endpoint":"3637e5ee-5051-56db-ab55-97b6b21221f2-websocket-0","version":"8.0.10"}',
    # [F8] event from Zeek 8.0.10
    '{"type":"data-message","topic":"/test/ping","@data-type":"vector","data":[{"@data-type":"count","data":1},'
    '{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"Test::ping"},'
    '{"@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"address","data":"127.0.0.1"},'
    '{"@data-type":"string","data":"ping #1"}]}]}]}',
    # [F8] error for wrong argument types/count or an unknown event
    '{"type":"error","code":"deserialization_failed","context":"failed to create Zeek event"}',
    # [F8] error for non-JSON or an unknown type
    '{"type":"error","code":"deserialization_failed","context":"failed to decode JSON object"}',
    # [F44] live example from the docs, with an (empty) metadata vector
    '{"type":"data-message","topic":"zeek.test","@data-type":"vector","data":[{"@data-type":"count","data":1},'
    '{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"hello"},'
    '{"@data-type":"vector","data":[{"@data-type":"count","data":3}]},{"@data-type":"vector","data":[]}]}]}',
    # [BJT] TEST(data_message) sections
    '{"type":"data-message","topic":"/test/topic","@data-type":"none","data":{}}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"boolean","data":true}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"count","data":42}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"integer","data":42}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"real","data":%f}' % 42.0,  # snprintf "%f"
    '{"type":"data-message","topic":"/test/topic","@data-type":"real","data":%f}' % 1234567890123456789012345.0,
    '{"type":"data-message","topic":"/test/topic","@data-type":"string","data":"string!"}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"address","data":"192.128.4.4"}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"subnet","data":"192.128.4.0/24"}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"port","data":"8080/tcp"}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"timespan","data":"0s"}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"timespan","data":"1ns"}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"timespan","data":"1ms"}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"timespan","data":"1s"}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"timestamp","data":"2014-07-09T10:16:44.000"}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"enum-value","data":"foo"}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"vector","data":[{"@data-type":"integer","data":1},'
    '{"@data-type":"count","data":2},{"@data-type":"string","data":"three"}]}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"set","data":[{"@data-type":"integer","data":1},'
    '{"@data-type":"integer","data":2},{"@data-type":"integer","data":3}]}',
    '{"type":"data-message","topic":"/test/topic","@data-type":"table","data":[{"key":{"@data-type":"string",'
    '"data":"a-key"},"value":{"@data-type":"integer","data":1}},{"key":{"@data-type":"string","data":"b-key"},'
    '"value":{"@data-type":"count","data":42}}]}',
    # [BDOC] "Data Messages" example
    '{"type":"data-message","topic":"/foo/bar","@data-type":"count","data":1}',
    # [BDOC] "Encoding of Zeek Events" example (event_1 with integer 42 and string "test")
    '{"type":"data-message","topic":"/foo/bar","@data-type":"vector","data":[{"@data-type":"count","data":1},'
    '{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"event_1"},'
    '{"@data-type":"vector","data":[{"@data-type":"integer","data":42},{"@data-type":"string","data":"test"}]}]}]}',
    # [BDOC] ack example
    '{"type":"ack","endpoint":"925c9110-5b87-57d9-9d80-b65568e87a44","version":"2.2.0-22"}',
    # [BDOC] error example
    '{"type":"error","code":"deserialization_failed","context":"input #1 contained malformed JSON -> '
    'caf::pec::unexpected_character(1, 1)"}',
]


def reencode(msg) -> str:
    if isinstance(msg, Ack):
        return v1.encode_ack(msg.endpoint, msg.version)
    if isinstance(msg, ErrorMessage):
        return v1.encode_error(msg.code, msg.context)
    assert isinstance(msg, DataMessage)
    return v1.encode_data_message(msg.topic, msg.value)


@pytest.mark.parametrize("golden", GOLDEN_MESSAGES)
def test_golden_message_reencodes_byte_identically(golden):
    assert reencode(v1.decode_message(golden)) == golden
    assert reencode(v1.decode_message(golden.encode())) == golden  # bytes in, same out


def test_golden_zeek_event_decodes_to_its_parts():
    # [F8] event from Zeek 8.0.10
    topic, ev = v1.decode_event_message(GOLDEN_MESSAGES[1])
    assert topic == "/test/ping"
    assert ev == Event("Test::ping", (Count(1), ipaddress.ip_address("127.0.0.1"), "ping #1"))
    assert type(ev.args[0]) is Count and ev.metadata is None
    assert v1.encode_event_message(topic, ev) == GOLDEN_MESSAGES[1]


def test_golden_doc_event_keeps_its_empty_metadata_vector():
    # [F44]: a third, empty element after the args survives the round trip
    topic, ev = v1.decode_event_message(GOLDEN_MESSAGES[4])
    assert (topic, ev.name, ev.args, ev.metadata) == ("zeek.test", "hello", (Count(3),), ())
    assert v1.encode_event_message(topic, ev) == GOLDEN_MESSAGES[4]


def test_golden_network_timestamp_metadata():
    # [F8] the metadata element Zeek adds with EventMetadata::add_network_timestamp=T
    md = (
        '{"@data-type":"vector","data":[{"@data-type":"vector","data":[{"@data-type":"count","data":1},'
        '{"@data-type":"timestamp","data":"2026-11-22T02:26:56.152"}]}]}'
    )
    value = v1.loads_value(md)
    assert value == [[Count(1), dt.datetime(2026, 11, 22, 2, 26, 56, 152000, tzinfo=UTC)]]
    assert v1.dumps_value(value) == md
    # ... as the third element of the [F8] event
    outer = json.loads(GOLDEN_MESSAGES[1])
    outer["data"][2]["data"].append(json.loads(md))
    text = json.dumps(outer, separators=(",", ":"))
    topic, ev = v1.decode_event_message(text)
    assert ev.network_timestamp == dt.datetime(2026, 11, 22, 2, 26, 56, 152000, tzinfo=UTC)
    assert v1.encode_event_message(topic, ev) == text


def test_golden_wstest_event_as_python_json_dumps_sends_it():
    # [WST] build_event_v1("/test/topic", "ping", ["hello"]) sent with json.dumps (", " / ": ")
    sent = json.dumps(
        {
            "type": "data-message",
            "topic": "/test/topic",
            "@data-type": "vector",
            "data": [
                {"@data-type": "count", "data": 1},  # Format
                {"@data-type": "count", "data": 1},  # Type
                {
                    "@data-type": "vector",
                    "data": [
                        {"@data-type": "string", "data": "ping"},
                        {"@data-type": "vector", "data": [{"@data-type": "string", "data": "hello"}]},
                    ],
                },
            ],
        }
    )
    topic, ev = v1.decode_event_message(sent)
    assert (topic, ev) == ("/test/topic", Event("ping", ("hello",)))
    assert v1.encode_event_message(topic, ev) == json.dumps(json.loads(sent), separators=(",", ":"))
    # hello_v1(topics) sends [own_topic] + topics as the subscription
    assert v1.decode_subscription(json.dumps(["/zeek/wstest/client/", "/test/topic"])) == [
        "/zeek/wstest/client/",
        "/test/topic",
    ]


# ----------------------------------------------------------------------------- single values

# [BJT] Broker's encoder baselines for single values (compact), with the Python value
GOLDEN_VALUES = [
    ('{"@data-type":"none","data":{}}', None),
    ('{"@data-type":"boolean","data":true}', True),
    ('{"@data-type":"boolean","data":false}', False),
    ('{"@data-type":"count","data":0}', Count(0)),
    ('{"@data-type":"count","data":10}', Count(10)),
    ('{"@data-type":"count","data":100}', Count(100)),
    ('{"@data-type":"integer","data":0}', 0),
    ('{"@data-type":"integer","data":-10}', -10),
    ('{"@data-type":"real","data":%f}' % 0.0, 0.0),
    ('{"@data-type":"real","data":%f}' % -10.0, -10.0),
    ('{"@data-type":"string","data":"foo"}', "foo"),
    ('{"@data-type":"string","data":"foo\\n\\"bar"}', 'foo\n"bar'),
    ('{"@data-type":"address","data":"192.128.4.4"}', ipaddress.ip_address("192.128.4.4")),
    ('{"@data-type":"address","data":"2001:db8::"}', ipaddress.ip_address("2001:db8::")),
    ('{"@data-type":"subnet","data":"192.128.4.0/24"}', ipaddress.ip_network("192.128.4.0/24")),
    ('{"@data-type":"port","data":"8080/tcp"}', Port(8080, "tcp")),
    ('{"@data-type":"port","data":"9000/udp"}', Port(9000, "udp")),
    ('{"@data-type":"timespan","data":"0s"}', Timespan(0)),
    ('{"@data-type":"timespan","data":"1ns"}', Timespan(1)),
    ('{"@data-type":"timespan","data":"999ns"}', Timespan(999)),
    ('{"@data-type":"timespan","data":"1us"}', Timespan(1_000)),
    ('{"@data-type":"timespan","data":"999us"}', Timespan(999_000)),
    ('{"@data-type":"timespan","data":"1ms"}', Timespan(1_000_000)),
    ('{"@data-type":"timespan","data":"999ms"}', Timespan(999_000_000)),
    ('{"@data-type":"timespan","data":"1s"}', Timespan(1_000_000_000)),
    ('{"@data-type":"timestamp","data":"2014-07-09T10:16:44.000"}', dt.datetime(2014, 7, 9, 10, 16, 44, tzinfo=UTC)),
    ('{"@data-type":"enum-value","data":"foo"}', EnumValue("foo")),
    ('{"@data-type":"enum-value","data":"foo\\n\\"bar"}', EnumValue('foo\n"bar')),
]


@pytest.mark.parametrize("text,value", GOLDEN_VALUES)
def test_golden_value_decodes_to_python_and_back(text, value):
    got = v1.loads_value(text)
    assert got == value and type(got) is type(value)
    assert v1.dumps_value(value) == text
    assert v1.dumps_value(got) == text


# [BDOC] single-value examples from the data model section (whitespace removed)
DOC_VALUES = [
    ('{"@data-type":"none","data":{}}', None),
    ('{"@data-type":"count","data":123}', Count(123)),
    ('{"@data-type":"integer","data":-7}', -7),
    ('{"@data-type":"real","data":-7.5}', -7.5),
    ('{"@data-type":"timespan","data":"1500ms"}', Timespan(1_500_000_000)),
    ('{"@data-type":"timestamp","data":"2022-04-10T07:00:00.000"}', dt.datetime(2022, 4, 10, 7, tzinfo=UTC)),
    ('{"@data-type":"string","data":"Hello World!"}', "Hello World!"),
    ('{"@data-type":"enum-value","data":"foo"}', EnumValue("foo")),
    ('{"@data-type":"address","data":"2001:db8::"}', ipaddress.ip_address("2001:db8::")),
    ('{"@data-type":"subnet","data":"255.255.255.0/24"}', ipaddress.ip_network("255.255.255.0/24")),
    ('{"@data-type":"port","data":"8080/tcp"}', Port(8080, "tcp")),
    (
        '{"@data-type":"vector","data":[{"@data-type":"count","data":42},{"@data-type":"integer","data":23}]}',
        [Count(42), 23],
    ),
    (
        '{"@data-type":"set","data":[{"@data-type":"string","data":"foo"},{"@data-type":"string","data":"bar"}]}',
        frozenset({"foo", "bar"}),
    ),
    (
        '{"@data-type":"table","data":[{"key":{"@data-type":"string","data":"first-name"},"value":{"@data-type":'
        '"string","data":"John"}},{"key":{"@data-type":"string","data":"last-name"},"value":{"@data-type":'
        '"string","data":"Doe"}}]}',
        {"first-name": "John", "last-name": "Doe"},
    ),
]


@pytest.mark.parametrize("text,value", DOC_VALUES)
def test_doc_value_decodes(text, value):
    assert v1.loads_value(text) == value


def test_doc_real_is_written_as_broker_writes_it():
    # Broker writes reals with "%f" ([BJT] TEST(real)); -7.5 therefore leaves as -7.500000
    assert v1.dumps_value(-7.5) == '{"@data-type":"real","data":-7.500000}'


def test_doc_set_is_written_in_brokers_order():
    # a set has no order in Python; the encoder sorts members like Broker's std::set would
    assert v1.dumps_value(frozenset({"foo", "bar"})) == (
        '{"@data-type":"set","data":[{"@data-type":"string","data":"bar"},{"@data-type":"string","data":"foo"}]}'
    )


# [ZCT] zeek-client's timespan and timestamp expectations
@pytest.mark.parametrize(
    "text,delta",
    [
        ("10s", dt.timedelta(seconds=10)),
        ("10.5d", dt.timedelta(days=10, hours=12)),
        ("1000ns", dt.timedelta(microseconds=1)),
        ("1ms", dt.timedelta(milliseconds=1)),
        ("1000ms", dt.timedelta(seconds=1)),
        ("1min", dt.timedelta(minutes=1)),
        ("1h", dt.timedelta(hours=1)),
        ("1d", dt.timedelta(days=1)),
        ("7d", dt.timedelta(weeks=1)),
        ("10h", dt.timedelta(hours=10)),
    ],
)
def test_zeek_client_timespans(text, delta):
    ts = v1.loads_value(json.dumps({"@data-type": "timespan", "data": text}))
    assert ts == Timespan.from_timedelta(delta)
    assert ts.to_timedelta() == delta


@pytest.mark.parametrize("bad", ["oops", "10nano", "1a"])
def test_zeek_client_bad_timespans(bad):
    with pytest.raises(v1.WireError, match="timespan"):
        v1.loads_value(json.dumps({"@data-type": "timespan", "data": bad}))


def test_zeek_client_timestamps():
    for text in ("2022-10-20T01:02:03.004", "2022-10-21T00:00:00.000"):
        value = v1.loads_value(json.dumps({"@data-type": "timestamp", "data": text}))
        assert value == dt.datetime.fromisoformat(text).replace(tzinfo=UTC)
        assert json.loads(v1.dumps_value(value))["data"] == text
