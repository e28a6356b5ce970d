"""Configuration of the live bridge: the Zeek WebSocket connection, metrics and logging.

The main `msewatch.config.Config` holds these as its `zeek`, `metrics` and `log` fields.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# Zeek 8 enforces this on the X-Application-Name header (PROTOCOL-FACTS §4.4)
APPLICATION_NAME_RE = re.compile(r"[-/_.=:*@a-zA-Z0-9]+")
SHARD_RE = re.compile(r"(\d+)/(\d+)")
# RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens
_HOST_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _q(value: str, limit: int = 80) -> str:
    """repr of a user string, cut short: error messages stay one readable line."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def checking_files(info: ValidationInfo) -> bool:
    """Whether this validation checks files on disk (parse_config's check_files)."""
    return bool(info.context and info.context.get("check_files"))


def writable_file(v: str | None) -> str | None:
    """A file the run appends to: its folder must exist and let us create or append to it.
    `{shard}` in the file name is fine (each shard's file lives in the same folder); in a
    folder name it is left to the run, which reports a missing folder in one line."""
    if v is None:
        return v
    if not v:
        raise ValueError("must be a file name or null")
    p = Path(v)
    if "{shard}" in str(p.parent):
        return v
    if p.is_dir():
        raise ValueError(f"{_q(v)} is a folder, not a file")
    folder = p.parent
    if not folder.is_dir():
        raise ValueError(f"folder {_q(str(folder))} does not exist (create it; under systemd the unit's "
                         "LogsDirectory=/StateDirectory= creates it at start)")
    probe = Path(str(p).replace("{shard}", "all"))
    if probe.exists():
        if not os.access(probe, os.W_OK):
            raise ValueError(f"{_q(str(probe))} is not writable")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot create files in folder {_q(str(folder))}")
    return v


class TLSConfig(_Strict):
    """TLS for wss:// endpoints (Zeek's WebSocket server has TLS off by default since 7.2;
    a reverse proxy may add it)."""

    ca_file: str | None = None  # PEM bundle to verify the server with; None = system store
    verify: bool = True  # False: no certificate or host name check (test setups only)
    cert_file: str | None = None  # client certificate (PEM), if the server asks for one
    key_file: str | None = None  # its private key (PEM); defaults to cert_file

    # With check_files (run, check-config) the files are loaded here, once, the way the
    # bridge loads them on connecting: a missing or unreadable file is a config error naming
    # the key, not a retry loop.
    @field_validator("ca_file")
    @classmethod
    def _ca_bundle(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and checking_files(info):
            import ssl  # only when checking files: start-up of the offline commands

            try:
                ssl.create_default_context(cafile=v)
            except (ssl.SSLError, ValueError) as e:  # SSLError first: it is an OSError too
                raise ValueError(f"{_q(v)} is not a PEM certificate bundle ({e})") from None
            except OSError as e:
                raise ValueError(f"cannot read {_q(v)}: {e.strerror or e}") from None
        return v

    @model_validator(mode="after")
    def _client_cert(self, info: ValidationInfo) -> "TLSConfig":
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file is set but cert_file is not")
        if self.cert_file is not None and checking_files(info):
            import ssl

            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(self.cert_file, self.key_file)
            except (ssl.SSLError, ValueError) as e:  # SSLError first: it is an OSError too
                raise ValueError(f"cert_file/key_file {_q(self.cert_file)}: not a PEM certificate with its key "
                                 f"({e})") from None
            except OSError as e:
                raise ValueError(f"cert_file/key_file: cannot read {_q(e.filename or self.cert_file)}: "
                                 f"{e.strerror or e}") from None
        return self


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
    # Flow labels whose verdicts go to Zeek in full (MSEWatch::verdict: msewatch.log, notices,
    # conn.log). The other flows get only their conn.log label, packed in batches
    # (MSEWatch::flow_labels), when Zeek's package says it takes them; "all" = every verdict
    # in full (what older packages get anyway).
    full_verdicts: list[Literal["p2p_likely", "normal_likely", "unknown"]] = ["p2p_likely"]
    # Compact labels per flow_labels message; a batch goes out when it is full ...
    label_batch: int = Field(1000, ge=1, le=100_000)
    # ... or this many seconds after its first label (Zeek holds conn.log entries 2 s)
    label_delay: float = Field(0.05, ge=0, le=1.0)

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

    @field_validator("full_verdicts", mode="before")
    @classmethod
    def _all_labels(cls, v: object) -> object:
        return ["p2p_likely", "normal_likely", "unknown"] if v == "all" else v

    @field_validator("full_verdicts")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"full_verdicts {v!r} names a label twice")
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

    @field_validator("listen")
    @classmethod
    def _address(cls, v: str) -> str:
        """An IPv4/IPv6 address or a host name; whether it can be bound is known only when
        the server starts (the run then fails with one line naming metrics.listen)."""
        try:
            ipaddress.ip_address(v)
            return v
        except ValueError:
            pass
        name = v[:-1] if v.endswith(".") else v
        if 0 < len(name) <= 253 and all(_HOST_LABEL_RE.fullmatch(label) for label in name.split(".")):
            return v
        raise ValueError(f"{_q(v)} is not an IP address or host name")


class LogConfig(_Strict):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # None: stderr (journald under systemd); a path: appended to, reopened on SIGHUP
    file: str | None = None

    @field_validator("file")
    @classmethod
    def _writable(cls, v: str | None, info: ValidationInfo) -> str | None:
        return writable_file(v) if checking_files(info) else v

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v
