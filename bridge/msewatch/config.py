"""Configuration: YAML in, validated models out, errors that name the offending key.

The bundled default (msewatch/data/default.yaml) documents every key line by line;
`Config()` with no arguments equals that file.

Everything a command would die on later is checked here, so that `check-config` saying ok
means the run starts: numbers are finite and in range (no NaN or infinity anywhere),
networks parse, the files the run opens exist (docs/failure-modes.md lists what is checked).
Loading is bounded too: YAML aliases may not expand the document beyond
`MAX_EXPANDED_NODES` nodes (a "billion laughs" file is rejected before it is built), and
every error message quotes at most a short, truncated rendering of the bad value.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import reprlib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .config_zeek import LogConfig, MetricsConfig, ZeekConfig, checking_files, writable_file
from .detect.params import DetectParams


class ConfigError(Exception):
    """A configuration problem a user can fix; the message names the file and key."""


# Aliases may repeat nodes; the document they expand to is capped at this many nodes
# (the bundled default has about 150). A file without aliases is not limited by it.
MAX_EXPANDED_NODES = 100_000
_MAX_MESSAGE = 300  # characters of one error message
_MAX_ERRORS = 20  # error lines reported at most

_short = reprlib.Repr()
_short.maxlevel, _short.maxlist, _short.maxdict, _short.maxtuple, _short.maxset = 2, 4, 4, 4, 4
_short.maxstring = _short.maxother = _short.maxlong = 40


def short_repr(value: Any) -> str:
    """repr(value), bounded in size and in work (safe on huge or shared nested values)."""
    return _short.repr(value)


def _clip(text: str, limit: int = _MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Strict(BaseModel):
    # allow_inf_nan=False: NaN compares false with everything (a NaN bias silently turns
    # detection off) and infinity turns sums into NaN; no knob needs either
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)


# Log-odds and weights: beyond +-1000 a weight means nothing more (P is already 0 or 1)
# and sums of huge weights overflow to infinity and NaN.
LogOdds = Annotated[float, Field(ge=-1000.0, le=1000.0)]
# A host window: a bucket is window / buckets_per_window seconds wide; below a millisecond
# the bucket index of a Unix time overflows the float range's precision.
WindowSeconds = Annotated[float, Field(ge=0.001, le=1e9)]


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
    bias: LogOdds = -4.0
    weights: dict[str, LogOdds] = Field(
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
    windows: tuple[WindowSeconds, WindowSeconds, WindowSeconds] = (10.0, 120.0, 1800.0)
    buckets_per_window: int = Field(4, ge=1, le=60)
    hll_lg_k: int = Field(10, ge=4, le=16)
    discovery_delta: float = Field(60.0, ge=10, le=120)
    half_life: float = Field(600.0, gt=0)
    local_nets: list[str] = Field(
        default_factory=lambda: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10"]
    )
    max_hosts: int = Field(100_000, ge=1)
    bias: LogOdds = -3.0
    w_p2p_flows: LogOdds = 7.0
    w_encrypted_peerlike: LogOdds = 0.5
    w_discovery: LogOdds = 5.0
    w_discovery_near_encrypted: LogOdds = 4.0
    w_peer_fanout: LogOdds = 0.6
    w_normal_flows: LogOdds = -0.05
    t_low: float = Field(0.2, gt=0, lt=1)
    t_high: float = Field(0.85, gt=0, lt=1)
    min_flows: int = Field(3, ge=1)
    family_threshold: LogOdds = 1.0

    @field_validator("local_nets")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        """Each entry must be a network; host bits are allowed and cleared ("10.1.2.3/8" is
        10.0.0.0/8), so every consumer can parse the result strictly."""
        out = []
        for i, net in enumerate(v):
            try:
                out.append(str(ipaddress.ip_network(net, strict=False)))
            except ValueError as e:
                raise ValueError(f"[{i}] {short_repr(net)} is not a network: {_clip(str(e), 120)}") from None
        return out

    @model_validator(mode="after")
    def _ordered(self) -> "HostConfig":
        if self.t_low >= self.t_high:
            raise ValueError(f"t_low ({self.t_low}) must be below t_high ({self.t_high})")
        return self


class OutputsConfig(_Strict):
    """Where `msewatch run` sends verdicts besides Zeek."""

    verdicts_jsonl: str | None = None
    suricata_socket: str | None = None
    dataset: str = "msewatch-peers"
    dataset_ttl: float = Field(3600.0, gt=0)
    dataset_min_probability: float = Field(0.9, ge=0, le=1)

    @field_validator("verdicts_jsonl")
    @classmethod
    def _writable(cls, v: str | None, info: ValidationInfo) -> str | None:
        return writable_file(v) if checking_files(info) else v


class StateConfig(_Strict):
    """`msewatch run`: the engine's host state kept across restarts (msewatch/state.py)."""

    path: str | None = None
    interval: float = Field(30.0, gt=0, le=86400)

    @field_validator("path")
    @classmethod
    def _writable(cls, v: str | None, info: ValidationInfo) -> str | None:
        return writable_file(v) if checking_files(info) else v


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
    state: StateConfig = StateConfig()

    @field_validator("detect")
    @classmethod
    def _detect_params(cls, v: dict[str, Any]) -> dict[str, Any]:
        build_detect_params(v)  # raises on unknown keys / wrong types
        return v

    def detect_params(self) -> DetectParams:
        return build_detect_params(self.detect)


# Integer detector parameters are counts and byte lengths; beyond these bounds they only
# cost memory or time (mse_ff_prefix builds a byte string that long for every flow).
_DETECT_INT_RANGE = (0, 1 << 31)
_DETECT_INT_MAX = {"mse_ff_prefix": 256}
_DETECT_TUPLE_MAX = 1024  # elements of a tuple parameter (utp_excluded_ports)


def _detect_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name}: expected int, got {type(value).__name__} ({short_repr(value)})")
    lo, hi = _DETECT_INT_RANGE
    hi = _DETECT_INT_MAX.get(name, hi)
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {short_repr(value)} is out of range [{lo}, {hi}]")
    return value


def build_detect_params(overrides: dict[str, Any]) -> DetectParams:
    if not isinstance(overrides, dict):
        raise ValueError(f"expected a mapping, got {type(overrides).__name__}")
    fields = {f.name: f for f in dataclasses.fields(DetectParams)}
    unknown = sorted(short_repr(k) for k in set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown detector parameter(s) {', '.join(unknown[:10])}")
    defaults = DetectParams()
    clean: dict[str, Any] = {}
    for name, value in overrides.items():
        default = getattr(defaults, name)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{name}: expected bool, got {type(value).__name__} ({short_repr(value)})")
        elif isinstance(default, int):
            value = _detect_int(name, value)
        elif isinstance(default, float):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{name}: expected float, got {type(value).__name__} ({short_repr(value)})")
            try:
                value = float(value)
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):
                raise ValueError(f"{name}: {short_repr(value)} is not a finite number")
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"{name}: expected a list, got {type(value).__name__} ({short_repr(value)})")
            if len(value) > _DETECT_TUPLE_MAX:
                raise ValueError(f"{name}: {len(value)} elements, at most {_DETECT_TUPLE_MAX}")
            value = tuple(_detect_int(f"{name}[{i}]", x) for i, x in enumerate(value))
        elif not isinstance(value, type(default)):
            raise ValueError(
                f"{name}: expected {type(default).__name__}, got {type(value).__name__} ({short_repr(value)})")
        clean[name] = value
    return dataclasses.replace(defaults, **clean)


def default_config_text() -> str:
    return resources.files("msewatch").joinpath("data/default.yaml").read_text()


def _format_error(source: str, err: ValidationError) -> str:
    """One line per error: "FILE: dotted.key: message", each bounded in length."""
    lines = []
    errors = err.errors(include_url=False, include_input=False)
    for e in errors[:_MAX_ERRORS]:
        loc = ".".join(_clip(str(p), 60) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "value_error" and msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        lines.append(_clip(f"{source}: {loc}: {msg}", _MAX_MESSAGE + len(source)))
    if len(errors) > _MAX_ERRORS:
        lines.append(f"{source}: ... and {len(errors) - _MAX_ERRORS} more error(s)")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>", *, check_files: bool = False) -> Config:
    """Validate config data. check_files: also check the files the live run opens (the
    verdicts JSONL's and the log file's folders, the TLS files) as they are now; `run` and
    `check-config` do, the offline commands (analyze, annotate, eval, ...) do not need them."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return Config.model_validate(data, context={"check_files": check_files})
    except ValidationError as e:
        raise ConfigError(_format_error(source, e)) from None


def _expanded_size(root: yaml.Node, limit: int) -> tuple[int, int]:
    """(nodes of the document with every alias expanded, distinct nodes), without building
    it: sizes are memoised per node, so shared subtrees are counted in linear time. Raises
    ValueError on a recursive alias. The count stops growing meaningfully past `limit`."""
    import yaml  # only with a config file (start-up of analyze without -c)

    sizes: dict[int, int] = {}
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                children = []
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), limit + 1)
            state[key] = 2
            continue
        st = state.get(key)
        if st == 2:
            continue
        if st == 1:
            raise ValueError(f"recursive alias at line {node.start_mark.line + 1}")
        state[key] = 1
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            stack.extend((n, False) for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((n, False) for n in node.value)
    return sizes[id(root)], len(sizes)


def load_yaml_bounded(text: str, max_nodes: int = MAX_EXPANDED_NODES) -> Any:
    """yaml.safe_load, refusing documents whose aliases expand beyond max_nodes nodes or
    refer to themselves. Raises ValueError (bounded message) or yaml.YAMLError."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded, distinct = _expanded_size(node, max_nodes)
        if expanded > max_nodes and expanded > distinct:
            raise ValueError(f"aliases expand the document beyond {max_nodes} nodes "
                             f"({distinct} nodes as written); refusing to build it")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_config(path: str | Path | None, *, check_files: bool = False) -> Config:
    """Load and validate a YAML config; None means the bundled defaults. Every failure is
    a ConfigError with a bounded, one-line-per-problem message naming the file.
    check_files: see parse_config."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from None
    import yaml  # only for a config file: `msewatch analyze` without -c starts without it

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{p}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save the file as UTF-8"
        ) from None
    try:
        data = load_yaml_bounded(text)
    except yaml.YAMLError as e:
        raise ConfigError(_clip(f"{p}: not valid YAML: {' '.join(str(e).split())}", 600)) from None
    except RecursionError:
        raise ConfigError(f"{p}: not valid YAML: nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as e:  # int/date conversions, alias limits
        raise ConfigError(_clip(f"{p}: not valid YAML: {e}", 600)) from None
    return parse_config(data, str(p), check_files=check_files)
