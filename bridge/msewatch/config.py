"""Configuration: YAML in, validated models out, errors that name the offending key.

The bundled default (msewatch/data/default.yaml) documents every key line by line;
`Config()` with no arguments equals that file.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config_zeek import LogConfig, MetricsConfig, ZeekConfig
from .detect.params import DetectParams


class ConfigError(Exception):
    """A configuration problem a user can fix; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class BudgetConfig(_Strict):
    max_packets: int = Field(32, ge=2, le=1024)
    max_bursts: int = Field(8, ge=2, le=64)
    head_bytes: int = Field(256, ge=16, le=256)
    udp_heads: int = Field(4, ge=1, le=16)
    max_age: float = Field(10.0, gt=0)


class FlowTableConfig(_Strict):
    max_flows: int = Field(200_000, ge=16)
    tcp_idle_timeout: float = Field(300.0, gt=0)
    udp_idle_timeout: float = Field(60.0, gt=0)
    sweep_interval: float = Field(5.0, gt=0)
    peer_cache_size: int = Field(32_768, ge=0)
    peer_cache_ttl: float = Field(300.0, gt=0)


FEATURES = (
    "mse_handshake",
    "mse_partial",
    "fully_encrypted",
    "bt_handshake",
    "bt_peerwire",
    "dht_krpc",
    "utp_header",
    "utp_coherent",
    "udp_tracker",
    "http_tracker",
    "lsd",
    "tls_like",
    "ssh_like",
    "http_like",
    "dns_like",
    "quic_like",
    "stun_like",
    "peer_cache",
    "host_context",
)


class ScoringConfig(_Strict):
    bias: float = -4.0
    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "mse_handshake": 7.0,
            "mse_partial": 3.0,
            "fully_encrypted": 2.0,
            "bt_handshake": 12.0,
            "bt_peerwire": 6.0,
            "dht_krpc": 10.0,
            "utp_header": 2.0,
            "utp_coherent": 9.0,
            "udp_tracker": 10.0,
            "http_tracker": 10.0,
            "lsd": 12.0,
            "tls_like": -8.0,
            "ssh_like": -8.0,
            "http_like": -6.0,
            "dns_like": -8.0,
            "quic_like": -8.0,
            "stun_like": -8.0,
            "peer_cache": 3.5,
            "host_context": 3.5,
        }
    )
    t_low: float = Field(0.2, gt=0, lt=1)
    t_high: float = Field(0.9, gt=0, lt=1)
    min_packets_normal: int = Field(4, ge=1)
    min_families_encrypted: int = Field(2, ge=1)
    alpha: float = Field(0.75, ge=0, le=1)

    @field_validator("weights")
    @classmethod
    def _known_features(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known: {list(FEATURES)}")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> "ScoringConfig":
        if self.t_low >= self.t_high:
            raise ValueError(f"t_low ({self.t_low}) must be below t_high ({self.t_high})")
        return self

    def weight(self, feature: str) -> float:
        return self.weights.get(feature, 0.0)


class HostConfig(_Strict):
    windows: tuple[float, float, float] = (10.0, 120.0, 1800.0)
    buckets_per_window: int = Field(4, ge=1, le=60)
    hll_lg_k: int = Field(10, ge=4, le=16)
    discovery_delta: float = Field(60.0, ge=10, le=120)
    half_life: float = Field(600.0, gt=0)
    local_nets: list[str] = Field(
        default_factory=lambda: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10"]
    )
    max_hosts: int = Field(100_000, ge=1)
    bias: float = -3.0
    w_p2p_flows: float = 7.0
    w_encrypted_peerlike: float = 0.5
    w_discovery: float = 5.0
    w_discovery_near_encrypted: float = 4.0
    w_peer_fanout: float = 0.6
    w_normal_flows: float = -0.05
    t_low: float = Field(0.2, gt=0, lt=1)
    t_high: float = Field(0.85, gt=0, lt=1)
    min_flows: int = Field(3, ge=1)
    family_threshold: float = 1.0


class OutputsConfig(_Strict):
    """Where `msewatch run` sends verdicts besides Zeek."""

    verdicts_jsonl: str | None = None
    suricata_socket: str | None = None
    dataset: str = "msewatch-peers"
    dataset_ttl: float = Field(3600.0, gt=0)
    dataset_min_probability: float = Field(0.9, ge=0, le=1)


class Config(_Strict):
    budget: BudgetConfig = BudgetConfig()
    flow_table: FlowTableConfig = FlowTableConfig()
    scoring: ScoringConfig = ScoringConfig()
    host: HostConfig = HostConfig()
    detect: dict[str, Any] = Field(default_factory=dict)
    zeek: ZeekConfig = ZeekConfig()
    metrics: MetricsConfig = MetricsConfig()
    log: LogConfig = LogConfig()
    outputs: OutputsConfig = OutputsConfig()

    @field_validator("detect")
    @classmethod
    def _detect_params(cls, v: dict[str, Any]) -> dict[str, Any]:
        build_detect_params(v)  # raises on unknown keys / wrong types
        return v

    def detect_params(self) -> DetectParams:
        return build_detect_params(self.detect)


def build_detect_params(overrides: dict[str, Any]) -> DetectParams:
    fields = {f.name: f for f in dataclasses.fields(DetectParams)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown detector parameter(s) {unknown}")
    defaults = DetectParams()
    clean: dict[str, Any] = {}
    for name, value in overrides.items():
        default = getattr(defaults, name)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = type(default)(value) if ok and isinstance(default, float) else value
        elif isinstance(default, tuple):
            ok = isinstance(value, (list, tuple))
            value = tuple(value) if ok else value
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ValueError(f"{name}: expected {type(default).__name__}, got {type(value).__name__} ({value!r})")
        clean[name] = value
    return dataclasses.replace(defaults, **clean)


def default_config_text() -> str:
    return resources.files("msewatch").joinpath("data/default.yaml").read_text()


def _format_error(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(source, e)) from None


def load_config(path: str | Path | None) -> Config:
    """Load and validate a YAML config; None means the bundled defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from None
    import yaml  # only for a config file: `msewatch analyze` without -c starts without it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    return parse_config(data, str(p))
