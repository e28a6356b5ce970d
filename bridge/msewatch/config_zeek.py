"""Configuration of the live bridge: the Zeek WebSocket connection, metrics and logging.

The main `msewatch.config.Config` holds these as its `zeek`, `metrics` and `log` fields.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Zeek 8 enforces this on the X-Application-Name header (PROTOCOL-FACTS §4.4)
APPLICATION_NAME_RE = re.compile(r"[-/_.=:*@a-zA-Z0-9]+")
SHARD_RE = re.compile(r"(\d+)/(\d+)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSConfig(_Strict):
    """TLS for wss:// endpoints (Zeek's WebSocket server has TLS off by default since 7.2;
    a reverse proxy may add it)."""

    ca_file: str | None = None  # PEM bundle to verify the server with; None = system store
    verify: bool = True  # False: no certificate or host name check (test setups only)
    cert_file: str | None = None  # client certificate (PEM), if the server asks for one
    key_file: str | None = None  # its private key (PEM); defaults to cert_file


class ReconnectConfig(_Strict):
    """Exponential backoff between connection attempts: initial * 2**n, capped at max,
    each delay scaled by a random factor in [1 - jitter, 1 + jitter]."""

    initial: float = Field(0.5, gt=0, le=60)
    max: float = Field(30.0, gt=0, le=3600)
    jitter: float = Field(0.2, ge=0, lt=1)


class ZeekConfig(_Strict):
    # Tried in order, one at a time (fail-over): the first that answers is used.
    endpoints: list[str] = Field(default_factory=lambda: ["ws://127.0.0.1:27759/v1/messages/json"], min_length=1)
    evidence_topic: str = "zeek/msewatch/evidence"
    verdict_topic: str = "zeek/msewatch/verdict"
    # "i/N": subscribe only to shard i of N (topic <evidence_topic>/<i>/); None = all evidence
    shard: str | None = None
    tls: TLSConfig = TLSConfig()
    application_name: str = "msewatch"
    reconnect: ReconnectConfig = ReconnectConfig()
    # Verdicts waiting to be sent (they survive a Zeek restart); beyond this they are dropped
    queue_size: int = Field(100_000, ge=1)
    # Flows whose verdicts are remembered (LRU by uid) to answer evidence Zeek sends again
    # (after a reconnect) without deciding the flow twice; 0 = decide every message
    answered_cache: int = Field(50_000, ge=0)
    # Seconds to flush the queued verdicts on SIGTERM/SIGINT before exiting
    shutdown_timeout: float = Field(10.0, ge=0)
    # Seconds to wait for the server's ack, and for the pong that confirms a sent batch
    ack_timeout: float = Field(10.0, gt=0)
    # Zone of timestamps on the wire: Broker writes and reads them in the Zeek host's
    # local time without an offset, so this must match the Zeek host ("utc" or "local").
    timestamps: Literal["utc", "local"] = "utc"

    @field_validator("endpoints")
    @classmethod
    def _ws_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            parts = urlsplit(url)
            if parts.scheme not in ("ws", "wss") or not parts.hostname:
                raise ValueError(f"endpoint {url!r} must be a ws:// or wss:// URL with a host")
            try:
                parts.port
            except ValueError:
                raise ValueError(f"endpoint {url!r} has an invalid port") from None
        return v

    @field_validator("evidence_topic", "verdict_topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not v or v != v.strip():
            raise ValueError(f"topic {v!r} must be non-empty without surrounding blanks")
        return v

    @field_validator("shard")
    @classmethod
    def _shard(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = SHARD_RE.fullmatch(v)
        if m is None or not 0 <= int(m[1]) < int(m[2]):
            raise ValueError(f"shard {v!r} must be \"i/N\" with 0 <= i < N, e.g. \"0/4\"")
        return v

    @field_validator("application_name")
    @classmethod
    def _app_name(cls, v: str) -> str:
        if not APPLICATION_NAME_RE.fullmatch(v):
            raise ValueError(f"application_name {v!r} must match [-/_.=:*@a-zA-Z0-9]+ (Zeek rejects others)")
        return v

    def subscription_topic(self) -> str:
        """The topic prefix this bridge subscribes to. Shards get a trailing '/' so that
        shard 1 does not also match shards 10..19 (Broker matches topic prefixes)."""
        if self.shard is None:
            return self.evidence_topic
        i, _n = self.shard.split("/")
        return f"{self.evidence_topic.rstrip('/')}/{int(i)}/"


class MetricsConfig(_Strict):
    enabled: bool = True
    listen: str = "127.0.0.1"
    port: int = Field(9877, ge=0, le=65535)  # 0 = any free port (tests)


class LogConfig(_Strict):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # None: stderr (journald under systemd); a path: appended to, reopened on SIGHUP
    file: str | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v
