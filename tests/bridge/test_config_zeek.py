"""ZeekConfig / MetricsConfig / LogConfig validation and the JSON log format."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import ValidationError

from msewatch.config_zeek import LogConfig, MetricsConfig, ZeekConfig
from msewatch.metrics import setup_logging
from msewatch.sources.zeek_ws import connect_kwargs, ssl_context


def test_defaults():
    z = ZeekConfig()
    assert z.endpoints == ["ws://127.0.0.1:27759/v1/messages/json"]
    assert (z.evidence_topic, z.verdict_topic, z.shard, z.application_name) == (
        "zeek/msewatch/evidence", "zeek/msewatch/verdict", None, "msewatch")
    assert (z.reconnect.initial, z.reconnect.max, z.reconnect.jitter, z.queue_size) == (0.5, 30.0, 0.2, 100_000)
    assert z.tls.verify is True and z.tls.ca_file is None
    assert z.subscription_topic() == "zeek/msewatch/evidence"
    m = MetricsConfig()
    assert (m.enabled, m.listen, m.port) == (True, "127.0.0.1", 9877)
    assert LogConfig().format == "text"


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"endpoints": ["http://x/v1/messages/json"]}, "ws:// or wss://"),
        ({"endpoints": []}, "at least 1"),
        ({"endpoints": ["ws://host:99999/"]}, "invalid port"),
        ({"shard": "4/4"}, "0 <= i < N"),
        ({"shard": "a/b"}, "i/N"),
        ({"application_name": "my app"}, "must match"),
        ({"reconnect": {"jitter": 1.5}}, "jitter"),
        ({"queue_size": 0}, "queue_size"),
        ({"bogus": 1}, "bogus"),
        ({"tls": {"cafile": "x"}}, "cafile"),
    ],
)
def test_invalid_settings_name_the_key(kw, message):
    with pytest.raises(ValidationError, match=message):
        ZeekConfig(**kw)


def test_shard_topic_cannot_match_other_shards():
    assert ZeekConfig(shard="1/16").subscription_topic() == "zeek/msewatch/evidence/1/"
    assert not "zeek/msewatch/evidence/10/".startswith(ZeekConfig(shard="1/16").subscription_topic())


def test_connection_options():
    z = ZeekConfig(application_name="msewatch-2", tls={"verify": False})
    kw = connect_kwargs("wss://zeek:27759/v1/messages/json", z)
    assert kw["additional_headers"] == {"X-Application-Name": "msewatch-2"}
    assert kw["ssl"].verify_mode == 0 and kw["ssl"].check_hostname is False
    assert ssl_context("ws://zeek:27759/", z.tls) is None


def test_json_log_lines():
    buf = io.StringIO()
    setup_logging(LogConfig(format="json", level="INFO"), stream=buf)
    try:
        logging.getLogger("msewatch.bridge").info("connected to %s", "ws://x", extra={"zeek_version": "8.0.10"})
        rec = json.loads(buf.getvalue().splitlines()[-1])
        assert rec["msg"] == "connected to ws://x" and rec["level"] == "info"
        assert rec["logger"] == "msewatch.bridge" and rec["zeek_version"] == "8.0.10"
    finally:
        logging.getLogger().handlers.clear()
