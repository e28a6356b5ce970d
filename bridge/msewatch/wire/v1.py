"""Broker's v1 JSON data model, as spoken by Zeek's WebSocket API.

Sources (see also /work/shared/PROTOCOL-FACTS.md §4.4 and §8):
- the data model: zeek/broker doc/web-socket.rst
- what Broker writes: zeek/broker libbroker/broker/format/json.hh and json.cc
  (timespans as "<int><ns|us|ms|s>", "0s" for zero; timestamps as
  "YYYY-MM-DDThh:mm:ss.mmm" in the *local time of the Zeek process*, truncated to
  milliseconds; reals with printf "%f"; compact JSON, "@data-type" before "data")
- what Broker accepts: zeek/broker libbroker/broker/internal/json.cc (a real must be a
  JSON number with a fraction, a count a non-negative JSON integer)

One table (`TYPES`) drives everything: each v1 `@data-type` has one decoder (JSON data ->
Python value), one encoder (Python value -> JSON data) and a rank for Broker-like
ordering of set members and table keys. Every decoding problem raises `WireError`, whose
message names the offending JSON location, e.g.
``data[2].data[1]: count must be a non-negative integer, got -3``.

Python values:

==============  ===========================================================
v1 @data-type   Python
==============  ===========================================================
none            None
boolean         bool
count           Count (an int subclass: 0 <= n < 2**64)
integer         int (-2**63 <= n < 2**63)
real            float (finite)
timespan        Timespan (exact nanoseconds); datetime.timedelta is accepted
timestamp       datetime.datetime, timezone-aware (UTC by default)
string          str
enum-value      EnumValue (a str subclass)
address         ipaddress.IPv4Address / IPv6Address
subnet          ipaddress.IPv4Network / IPv6Network
port            Port(number, proto)
vector          list (tuple inside set members and table keys; tuples encode too)
set             frozenset (set encodes too)
table           dict (FrozenTable inside set members and table keys)
==============  ===========================================================
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, NamedTuple

import orjson

__all__ = [
    "WireError",
    "Count",
    "Timespan",
    "EnumValue",
    "Port",
    "FrozenTable",
    "Typed",
    "Ack",
    "ErrorMessage",
    "DataMessage",
    "Event",
    "Codec",
    "TYPES",
    "DEFAULT",
    "decode_value",
    "encode_value",
    "decode_message",
    "encode_data_message",
    "encode_event_message",
    "decode_event_message",
    "event_from_value",
    "event_to_value",
    "encode_ack",
    "encode_error",
    "encode_subscription",
    "decode_subscription",
    "epoch_of",
    "timestamp_of",
]

COUNT_MAX = (1 << 64) - 1
INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1
UTC = _dt.timezone.utc

EVENT_FORMAT = 1  # [format-nr, type, [name, args, metadata?]]: always 1 (broker doc)
EVENT_TYPE = 1  # "For events, this is always 1" (broker doc)
METADATA_NETWORK_TIMESTAMP = 1  # metadata key 1 = network timestamp (PROTOCOL-FACTS §4.4)


class WireError(ValueError):
    """A message or value that does not follow the v1 data model (or an event contract).

    `path` locates the bad data inside the JSON message ("data[2].data[1]");
    `reason` says what is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path or "data"
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# --------------------------------------------------------------------------- value types


class Count(int):
    """A v1 `count`: an unsigned 64-bit integer (plain `int` encodes as `integer`)."""

    __slots__ = ()

    def __new__(cls, value: int = 0) -> "Count":
        if type(value) is bool or not isinstance(value, int):
            raise TypeError(f"count must be an integer, got {value!r}")
        if not 0 <= value <= COUNT_MAX:
            raise ValueError(f"count must be in [0, 2**64-1], got {value}")
        return int.__new__(cls, value)

    def __repr__(self) -> str:
        return f"Count({int.__repr__(self)})"

    __str__ = int.__repr__  # str(Count(2)) == "2"


class EnumValue(str):
    """A v1 `enum-value`, e.g. EnumValue("Notice::ACTION_LOG")."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"EnumValue({str.__repr__(self)})"


_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "min": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}


@dataclass(frozen=True, slots=True, order=True)
class Timespan:
    """A v1 `timespan` with Broker's resolution: whole nanoseconds (signed 64-bit)."""

    ns: int

    def __post_init__(self) -> None:
        if type(self.ns) is not int or not INT_MIN <= self.ns <= INT_MAX:
            raise ValueError(f"timespan must be a 64-bit integer of nanoseconds, got {self.ns!r}")

    @classmethod
    def from_seconds(cls, seconds: float) -> "Timespan":
        return cls(round(seconds * 1_000_000_000))

    @classmethod
    def from_timedelta(cls, td: _dt.timedelta) -> "Timespan":
        return cls(((td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds) * 1_000)

    @property
    def seconds(self) -> float:
        return self.ns / 1e9

    def to_timedelta(self) -> _dt.timedelta:
        """Rounded to microseconds, the resolution of timedelta."""
        return _dt.timedelta(microseconds=round(self.ns / 1000))

    def __str__(self) -> str:
        return _timespan_text(self.ns)


PORT_PROTOCOLS = ("?", "tcp", "udp", "icmp")  # Broker's port::protocol order


@dataclass(frozen=True, slots=True, order=True)
class Port:
    """A v1 `port`: "8080/tcp" <-> Port(8080, "tcp"). proto is tcp, udp, icmp or ?."""

    number: int
    proto: str = "tcp"

    def __post_init__(self) -> None:
        if type(self.number) is not int or not 0 <= self.number <= 65535:
            raise ValueError(f"port number must be an integer in [0, 65535], got {self.number!r}")
        if self.proto not in PORT_PROTOCOLS:
            raise ValueError(f"port protocol must be one of tcp, udp, icmp, ?; got {self.proto!r}")

    def __str__(self) -> str:
        return f"{self.number}/{self.proto}"


class FrozenTable(dict):
    """A hashable dict: how a v1 `table` is decoded inside a set member or table key."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))


@dataclass(frozen=True, slots=True)
class Typed:
    """An explicitly typed value, for when the Python type does not say the v1 type
    (e.g. Typed("count", 3) or Typed("enum-value", "Foo::BAR"))."""

    type: str
    value: Any


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Ack:
    """The server's reply to the subscription: {"type":"ack","endpoint":..,"version":..}."""

    endpoint: str
    version: str


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """{"type":"error","code":..,"context":..}: the server discarded some input."""

    code: str
    context: str


@dataclass(frozen=True, slots=True)
class DataMessage:
    """{"type":"data-message","topic":..,"@data-type":..,"data":..} with its value decoded."""

    topic: str
    value: Any


@dataclass(frozen=True, slots=True)
class Event:
    """A Zeek event: [1, 1, [name, [args...], metadata?]].

    metadata is None when the third element is absent (Zeek's default), otherwise a tuple
    of (Count key, value) pairs; key 1 is the network timestamp.
    """

    name: str
    args: tuple = ()
    metadata: tuple | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.args, tuple):
            object.__setattr__(self, "args", tuple(self.args))
        if self.metadata is not None and not isinstance(self.metadata, tuple):
            object.__setattr__(self, "metadata", tuple(tuple(kv) for kv in self.metadata))

    @property
    def network_timestamp(self) -> _dt.datetime | None:
        for key, value in self.metadata or ():
            if key == METADATA_NETWORK_TIMESTAMP and isinstance(value, _dt.datetime):
                return value
        return None


# --------------------------------------------------------------------------- helpers


def _child(path: str, i: int) -> str:
    return f"{path}.data[{i}]" if path else f"data[{i}]"


def _show(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 80 else text[:77] + "..."


_TIMESPAN_RE = re.compile(r"([+-]?)(\d+)(?:\.(\d+))?(ns|us|ms|s|min|h|d)")
_TIMESTAMP_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?"
)


def _timespan_text(ns: int) -> str:
    """Broker's rendering (format/json.hh): the coarsest of ns/us/ms/s that is exact."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    v = -ns if ns < 0 else ns
    if v % 1000:
        return f"{sign}{v}ns"
    v //= 1000
    if v % 1000:
        return f"{sign}{v}us"
    v //= 1000
    if v % 1000:
        return f"{sign}{v}ms"
    return f"{sign}{v // 1000}s"


def parse_timespan(text: str) -> int:
    """'1500ms' -> 1_500_000_000 ns. Integer or fractional value, optional sign,
    units ns us ms s min h d. Raises ValueError."""
    m = _TIMESPAN_RE.fullmatch(text)
    if m is None:
        raise ValueError("timespan must look like <number><ns|us|ms|s|min|h|d>")
    sign, whole, frac, unit = m.groups()
    mult = _UNIT_NS[unit]
    if frac:
        ns = Fraction(f"{whole}.{frac}") * mult
        ns = int(ns) if ns.denominator == 1 else round(ns)
    else:
        ns = int(whole) * mult
    if sign == "-":
        ns = -ns
    if not INT_MIN <= ns <= INT_MAX:
        raise ValueError("timespan exceeds the signed 64-bit nanosecond range")
    return ns


def epoch_of(ts: _dt.datetime) -> float:
    """Seconds since the epoch of an (aware) datetime."""
    return ts.timestamp()


def timestamp_of(epoch: float) -> _dt.datetime:
    """An aware UTC datetime from seconds since the epoch."""
    return _dt.datetime.fromtimestamp(epoch, UTC)


# --------------------------------------------------------------------------- the table


class TypeSpec(NamedTuple):
    name: str
    rank: int  # position in Broker's data variant: orders mixed-type set members / keys
    decode: Callable[["Codec", Any, str, bool], Any]  # (codec, data, path, hashable)
    encode: Callable[["Codec", Any, str], Any]  # (codec, value, path) -> JSON data
    sort_key: Callable[["Codec", Any], Any]


def _type_error(path: str, what: str, data: Any) -> WireError:
    return WireError(path, f"{what}, got {_show(data)}")


# -- decoders: (codec, data, path, hashable) -> python value


def _dec_none(c: "Codec", d: Any, p: str, h: bool) -> None:
    if type(d) is not dict or d:
        raise _type_error(p, "none must be {}", d)
    return None


def _dec_bool(c: "Codec", d: Any, p: str, h: bool) -> bool:
    if type(d) is not bool:
        raise _type_error(p, "boolean must be true or false", d)
    return d


def _dec_count(c: "Codec", d: Any, p: str, h: bool) -> Count:
    if type(d) is not int or d < 0:
        raise _type_error(p, "count must be a non-negative integer", d)
    if d > COUNT_MAX:
        raise _type_error(p, "count must be below 2**64", d)
    return Count(d)


def _dec_integer(c: "Codec", d: Any, p: str, h: bool) -> int:
    if type(d) is not int:
        raise _type_error(p, "integer must be a JSON integer", d)
    if not INT_MIN <= d <= INT_MAX:
        raise _type_error(p, "integer must fit in 64 bits", d)
    return d


def _dec_real(c: "Codec", d: Any, p: str, h: bool) -> float:
    t = type(d)
    if t is float:
        if not math.isfinite(d):
            raise _type_error(p, "real must be finite", d)
        return d
    if t is int:  # JSON has one number type; Broker itself writes "%f", i.e. with a fraction
        try:
            return float(d)
        except OverflowError:
            raise _type_error(p, "real out of range", d) from None
    raise _type_error(p, "real must be a JSON number", d)


def _dec_timespan(c: "Codec", d: Any, p: str, h: bool) -> Timespan:
    if type(d) is not str:
        raise _type_error(p, "timespan must be a string like \"1500ms\"", d)
    try:
        return Timespan(parse_timespan(d))
    except ValueError as e:
        raise _type_error(p, str(e), d) from None


def _dec_timestamp(c: "Codec", d: Any, p: str, h: bool) -> _dt.datetime:
    if type(d) is not str:
        raise _type_error(p, "timestamp must be an ISO 8601 string", d)
    return c.parse_timestamp(d, p)


def _dec_string(c: "Codec", d: Any, p: str, h: bool) -> str:
    if type(d) is not str:
        raise _type_error(p, "string must be a JSON string", d)
    return d


def _dec_enum(c: "Codec", d: Any, p: str, h: bool) -> EnumValue:
    if type(d) is not str or not d:
        raise _type_error(p, "enum-value must be a non-empty JSON string", d)
    return EnumValue(d)


def _dec_address(c: "Codec", d: Any, p: str, h: bool) -> Any:
    if type(d) is not str or "/" in d or "%" in d:
        raise _type_error(p, "address must be an IPv4 or IPv6 address string", d)
    try:
        return ipaddress.ip_address(d)
    except ValueError:
        raise _type_error(p, "address must be an IPv4 or IPv6 address string", d) from None


def _dec_subnet(c: "Codec", d: Any, p: str, h: bool) -> Any:
    if type(d) is not str or d.count("/") != 1 or "%" in d:
        raise _type_error(p, "subnet must be \"<address>/<prefix length>\"", d)
    try:
        return ipaddress.ip_network(d, strict=False)
    except ValueError:
        raise _type_error(p, "subnet must be \"<address>/<prefix length>\"", d) from None


def _dec_port(c: "Codec", d: Any, p: str, h: bool) -> Port:
    if type(d) is str:
        num, sep, proto = d.partition("/")
        if sep and num.isdigit() and num.isascii() and len(num) <= 5 and proto in PORT_PROTOCOLS:
            n = int(num)
            if n <= 65535:
                return Port(n, proto)
    raise _type_error(p, "port must be \"<0-65535>/<tcp|udp|icmp|?>\"", d)


def _dec_vector(c: "Codec", d: Any, p: str, h: bool) -> Any:
    if type(d) is not list:
        raise _type_error(p, "vector must be a JSON array", d)
    dv = c.decode_at
    out = [dv(x, _child(p, i), h) for i, x in enumerate(d)]
    return tuple(out) if h else out


def _dec_set(c: "Codec", d: Any, p: str, h: bool) -> frozenset:
    if type(d) is not list:
        raise _type_error(p, "set must be a JSON array", d)
    out: set = set()
    for i, x in enumerate(d):
        v = c.decode_at(x, _child(p, i), True)
        if v in out:
            raise WireError(_child(p, i), "duplicate set member")
        out.add(v)
    return frozenset(out)


def _dec_table(c: "Codec", d: Any, p: str, h: bool) -> dict:
    if type(d) is not list:
        raise _type_error(p, "table must be a JSON array of {\"key\":..,\"value\":..}", d)
    out: dict = FrozenTable() if h else {}
    base = f"{p}.data" if p else "data"
    for i, kv in enumerate(d):
        here = f"{base}[{i}]"
        if type(kv) is not dict or len(kv) != 2 or "key" not in kv or "value" not in kv:
            raise _type_error(here, "table entry must be {\"key\":..,\"value\":..}", kv)
        k = c.decode_at(kv["key"], f"{here}.key", True)
        if k in out:
            raise WireError(f"{here}.key", "duplicate table key")
        out[k] = c.decode_at(kv["value"], f"{here}.value", h)
    return out


# -- encoders: (codec, value, path) -> JSON data (orjson-serialisable)


def _enc_none(c: "Codec", v: Any, p: str) -> dict:
    return {}


def _enc_bool(c: "Codec", v: Any, p: str) -> bool:
    if type(v) is not bool:
        raise _type_error(p, "boolean needs a bool", v)
    return v


def _enc_count(c: "Codec", v: Any, p: str) -> int:
    if type(v) is bool or not isinstance(v, int) or not 0 <= v <= COUNT_MAX:
        raise _type_error(p, "count needs an integer in [0, 2**64-1]", v)
    return int(v)


def _enc_integer(c: "Codec", v: Any, p: str) -> int:
    if type(v) is bool or not isinstance(v, int) or not INT_MIN <= v <= INT_MAX:
        raise _type_error(p, "integer needs a 64-bit integer", v)
    return int(v)


def real_text(x: float) -> str:
    """Broker writes reals with printf "%f"; we do too whenever that is exact, so that
    Zeek's own reals re-encode byte-identically, and fall back to the shortest exact
    form (which always has a '.' or an exponent, as Broker's parser wants)."""
    s = "%f" % x
    if float(s) == x:
        return s
    return repr(x)


def _enc_real(c: "Codec", v: Any, p: str) -> Any:
    if type(v) is bool or not isinstance(v, (int, float)):
        raise _type_error(p, "real needs a float", v)
    x = float(v)
    if not math.isfinite(x):
        raise _type_error(p, "real must be finite (JSON has no inf/nan)", v)
    return orjson.Fragment(real_text(x))


def _enc_timespan(c: "Codec", v: Any, p: str) -> str:
    if isinstance(v, Timespan):
        return _timespan_text(v.ns)
    if isinstance(v, _dt.timedelta):
        return _timespan_text(Timespan.from_timedelta(v).ns)
    raise _type_error(p, "timespan needs a Timespan or datetime.timedelta", v)


def _enc_timestamp(c: "Codec", v: Any, p: str) -> str:
    if not isinstance(v, _dt.datetime):
        raise _type_error(p, "timestamp needs a datetime", v)
    return c.format_timestamp(v)


def _enc_string(c: "Codec", v: Any, p: str) -> str:
    if not isinstance(v, str):
        raise _type_error(p, "string needs a str", v)
    return str(v)


def _enc_enum(c: "Codec", v: Any, p: str) -> str:
    if not isinstance(v, str) or not v:
        raise _type_error(p, "enum-value needs a non-empty str", v)
    return str(v)


def _enc_address(c: "Codec", v: Any, p: str) -> str:
    if isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(v)
    if isinstance(v, str):
        return str(_dec_address(c, v, p, False))
    raise _type_error(p, "address needs an ipaddress address", v)


def _enc_subnet(c: "Codec", v: Any, p: str) -> str:
    if isinstance(v, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(v)
    if isinstance(v, str):
        return str(_dec_subnet(c, v, p, False))
    raise _type_error(p, "subnet needs an ipaddress network", v)


def _enc_port(c: "Codec", v: Any, p: str) -> str:
    if isinstance(v, Port):
        return f"{v.number}/{v.proto}"
    if isinstance(v, str):
        return str(_dec_port(c, v, p, False))
    raise _type_error(p, "port needs a Port", v)


def _enc_vector(c: "Codec", v: Any, p: str) -> list:
    if not isinstance(v, (list, tuple)):
        raise _type_error(p, "vector needs a list or tuple", v)
    ev = c.encode_at
    return [ev(x, _child(p, i)) for i, x in enumerate(v)]


def _enc_set(c: "Codec", v: Any, p: str) -> list:
    if not isinstance(v, (set, frozenset)):
        raise _type_error(p, "set needs a set or frozenset", v)
    members = sorted(v, key=c.sort_key)
    ev = c.encode_at
    return [ev(x, _child(p, i)) for i, x in enumerate(members)]


def _enc_table(c: "Codec", v: Any, p: str) -> list:
    if not isinstance(v, dict):
        raise _type_error(p, "table needs a dict", v)
    base = f"{p}.data" if p else "data"
    ev = c.encode_at
    keys = sorted(v, key=c.sort_key)
    return [
        {"key": ev(k, f"{base}[{i}].key"), "value": ev(v[k], f"{base}[{i}].value")}
        for i, k in enumerate(keys)
    ]


# -- ordering of set members and table keys (deterministic, modelled on Broker's)


def _addr_bytes(a: Any) -> bytes:
    return a.packed if a.version == 6 else b"\0" * 10 + b"\xff\xff" + a.packed


def _key_plain(c: "Codec", v: Any) -> Any:
    return v


def _key_str(c: "Codec", v: Any) -> Any:
    return v.encode("utf-8", "surrogatepass")


def _key_timespan(c: "Codec", v: Any) -> Any:
    return v.ns if isinstance(v, Timespan) else Timespan.from_timedelta(v).ns


def _key_timestamp(c: "Codec", v: Any) -> Any:
    return c.ensure_aware(v)


def _key_none(c: "Codec", v: Any) -> Any:
    return 0


def _key_subnet(c: "Codec", v: Any) -> Any:
    return (_addr_bytes(v.network_address), v.prefixlen + (96 if v.version == 4 else 0))


def _key_port(c: "Codec", v: Any) -> Any:
    return (v.number, PORT_PROTOCOLS.index(v.proto))


def _key_vector(c: "Codec", v: Any) -> Any:
    return tuple(c.sort_key(x) for x in v)


def _key_set(c: "Codec", v: Any) -> Any:
    return tuple(sorted(c.sort_key(x) for x in v))


def _key_table(c: "Codec", v: Any) -> Any:
    return tuple(sorted((c.sort_key(k), c.sort_key(x)) for k, x in v.items()))


def _key_address(c: "Codec", v: Any) -> Any:
    return _addr_bytes(v)


TYPES: dict[str, TypeSpec] = {
    s.name: s
    for s in (
        TypeSpec("none", 0, _dec_none, _enc_none, _key_none),
        TypeSpec("boolean", 1, _dec_bool, _enc_bool, _key_plain),
        TypeSpec("count", 2, _dec_count, _enc_count, _key_plain),
        TypeSpec("integer", 3, _dec_integer, _enc_integer, _key_plain),
        TypeSpec("real", 4, _dec_real, _enc_real, _key_plain),
        TypeSpec("string", 5, _dec_string, _enc_string, _key_str),
        TypeSpec("address", 6, _dec_address, _enc_address, _key_address),
        TypeSpec("subnet", 7, _dec_subnet, _enc_subnet, _key_subnet),
        TypeSpec("port", 8, _dec_port, _enc_port, _key_port),
        TypeSpec("timestamp", 9, _dec_timestamp, _enc_timestamp, _key_timestamp),
        TypeSpec("timespan", 10, _dec_timespan, _enc_timespan, _key_timespan),
        TypeSpec("enum-value", 11, _dec_enum, _enc_enum, _key_str),
        TypeSpec("set", 12, _dec_set, _enc_set, _key_set),
        TypeSpec("table", 13, _dec_table, _enc_table, _key_table),
        TypeSpec("vector", 14, _dec_vector, _enc_vector, _key_vector),
    )
}
"""Every v1 @data-type: its decoder, encoder and ordering. The codec has no other
per-type code."""

# Which v1 type a Python value encodes as (exact type first, then its MRO).
PYTHON_TYPES: dict[type, str] = {
    type(None): "none",
    bool: "boolean",
    Count: "count",
    int: "integer",
    float: "real",
    Timespan: "timespan",
    _dt.timedelta: "timespan",
    _dt.datetime: "timestamp",
    str: "string",
    EnumValue: "enum-value",
    ipaddress.IPv4Address: "address",
    ipaddress.IPv6Address: "address",
    ipaddress.IPv4Network: "subnet",
    ipaddress.IPv6Network: "subnet",
    Port: "port",
    list: "vector",
    tuple: "vector",
    set: "set",
    frozenset: "set",
    dict: "table",
    FrozenTable: "table",
}


# --------------------------------------------------------------------------- the codec


class Codec:
    """The v1 codec. `naive_tz` is the time zone of timestamps that carry no offset:
    Broker renders and parses them in the Zeek process's local time (format/json.cc,
    localtime_r), so this must equal the Zeek host's zone; UTC by default."""

    def __init__(self, naive_tz: _dt.tzinfo | None = UTC) -> None:
        # None = the system's local time zone (with its DST rules, via the C library)
        self.naive_tz = naive_tz

    # ---- values

    def type_of(self, value: Any, path: str = "") -> str:
        name = PYTHON_TYPES.get(type(value))
        if name is not None:
            return name
        if isinstance(value, Typed):
            return value.type
        for klass in type(value).__mro__[1:]:
            name = PYTHON_TYPES.get(klass)
            if name is not None:
                return name
        raise WireError(path, f"no v1 type for Python {type(value).__name__} {_show(value)}")

    def decode_at(self, obj: Any, path: str, hashable: bool = False) -> Any:
        if type(obj) is not dict or len(obj) != 2:
            raise _type_error(path, "value must be {\"@data-type\":..,\"data\":..}", obj)
        try:
            dtype = obj["@data-type"]
            data = obj["data"]
        except KeyError:
            raise _type_error(path, "value must be {\"@data-type\":..,\"data\":..}", obj) from None
        spec = TYPES.get(dtype) if type(dtype) is str else None
        if spec is None:
            raise _type_error(path, "unknown @data-type", dtype)
        return spec.decode(self, data, path, hashable)

    def encode_at(self, value: Any, path: str) -> dict:
        name = self.type_of(value, path)
        if type(value) is Typed:
            value = value.value
        spec = TYPES.get(name)
        if spec is None:
            raise WireError(path, f"unknown @data-type {name!r}")
        return {"@data-type": name, "data": spec.encode(self, value, path)}

    def sort_key(self, value: Any) -> tuple:
        name = self.type_of(value)
        if type(value) is Typed:
            value = value.value
        spec = TYPES[name]
        return (spec.rank, spec.sort_key(self, value))

    def decode_value(self, obj: Any, path: str = "") -> Any:
        """JSON-loaded {"@data-type":..,"data":..} -> Python value."""
        try:
            return self.decode_at(obj, path)
        except RecursionError:
            raise WireError(path, "nesting too deep") from None

    def encode_value(self, value: Any, path: str = "") -> dict:
        """Python value -> JSON-ready {"@data-type":..,"data":..}."""
        try:
            return self.encode_at(value, path)
        except RecursionError:
            raise WireError(path, "nesting too deep") from None

    # ---- timestamps

    def ensure_aware(self, ts: _dt.datetime) -> _dt.datetime:
        if ts.tzinfo is not None:
            return ts
        return ts.astimezone() if self.naive_tz is None else ts.replace(tzinfo=self.naive_tz)

    def parse_timestamp(self, text: str, path: str = "") -> _dt.datetime:
        """"2026-11-22T02:26:56.152" (Zeek), also with up to 9 fractional digits, 'Z'
        or an offset. Without an offset the time is in `naive_tz`. Result: aware UTC
        datetime (sub-microsecond digits are truncated)."""
        m = _TIMESTAMP_RE.fullmatch(text)
        if m is None:
            raise _type_error(path, "timestamp must be ISO 8601 YYYY-MM-DDThh:mm:ss[.fff]", text)
        y, mo, d, hh, mi, ss, frac, off = m.groups()
        micro = int((frac + "00000")[:6]) if frac else 0
        if off is None:
            tz = self.naive_tz
        elif off == "Z":
            tz = UTC
        else:
            sign = -1 if off[0] == "-" else 1
            digits = off[1:].replace(":", "")
            minutes = int(digits[:2]) * 60 + int(digits[2:])
            if minutes >= 24 * 60:
                raise _type_error(path, "timestamp offset out of range", text)
            tz = _dt.timezone(sign * _dt.timedelta(minutes=minutes))
        try:
            ts = _dt.datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss), micro, tzinfo=tz)
            return ts if tz is UTC else ts.astimezone(UTC)
        except (ValueError, OverflowError) as e:
            raise _type_error(path, f"invalid timestamp ({e})", text) from None

    def format_timestamp(self, ts: _dt.datetime) -> str:
        """As Broker writes it: local (naive_tz) time, no offset, milliseconds truncated."""
        t = self.ensure_aware(ts)
        if self.naive_tz is None:
            t = t.astimezone()
        elif t.tzinfo is not self.naive_tz:
            t = t.astimezone(self.naive_tz)
        return (
            f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}.{t.microsecond // 1000:03d}"
        )

    # ---- messages

    def decode_message(self, text: str | bytes) -> Ack | ErrorMessage | DataMessage:
        """One WebSocket text message from the server."""
        msg = loads(text)
        if type(msg) is not dict:
            raise _type_error("message", "must be a JSON object", msg)
        kind = msg.get("type")
        if kind == "data-message":
            topic = msg.get("topic")
            if type(topic) is not str:
                raise _type_error("topic", "data-message topic must be a string", topic)
            if len(msg) != 4 or "@data-type" not in msg or "data" not in msg:
                raise WireError("message", "data-message must have exactly type, topic, @data-type, data")
            value = self.decode_value({"@data-type": msg["@data-type"], "data": msg["data"]})
            return DataMessage(topic, value)
        if kind == "ack":
            ep, ver = msg.get("endpoint"), msg.get("version")
            if type(ep) is not str or type(ver) is not str:
                raise WireError("message", "ack needs string endpoint and version")
            return Ack(ep, ver)
        if kind == "error":
            code, ctx = msg.get("code"), msg.get("context")
            if type(code) is not str or type(ctx) is not str:
                raise WireError("message", "error needs string code and context")
            return ErrorMessage(code, ctx)
        raise _type_error("type", "message type must be data-message, ack or error", kind)

    def encode_data_message(self, topic: str, value: Any) -> str:
        if type(topic) is not str:
            raise WireError("topic", f"topic must be a string, got {topic!r}")
        enc = self.encode_value(value)
        return _dumps({"type": "data-message", "topic": topic, "@data-type": enc["@data-type"], "data": enc["data"]})

    def encode_event_message(self, topic: str, event: Event) -> str:
        return self.encode_data_message(topic, event_to_value(event))

    def decode_event_message(self, text: str | bytes) -> tuple[str, Event]:
        msg = self.decode_message(text)
        if not isinstance(msg, DataMessage):
            raise WireError("type", f"expected a data-message, got {type(msg).__name__}")
        return msg.topic, event_from_value(msg.value)


def event_to_value(event: Event) -> list:
    inner: list = [event.name, list(event.args)]
    if event.metadata is not None:
        inner.append([[Count(k) if type(k) is not Count else k, v] for k, v in event.metadata])
    return [Count(EVENT_FORMAT), Count(EVENT_TYPE), inner]


def event_from_value(value: Any) -> Event:
    """The decoded payload of a data-message -> Event (raises WireError if it is not one)."""
    if type(value) is not list or len(value) != 3:
        raise WireError("data", "a Zeek event is a vector [format, type, [name, args, metadata?]]")
    fmt, typ, body = value
    if type(fmt) is not Count or fmt != EVENT_FORMAT:
        raise WireError("data[0]", f"event format must be count 1, got {fmt!r}")
    if type(typ) is not Count or typ != EVENT_TYPE:
        raise WireError("data[1]", f"message type must be count 1 (event), got {typ!r}")
    if type(body) is not list or len(body) not in (2, 3):
        raise WireError("data[2]", "event must be a vector [name, args, metadata?]")
    name, args = body[0], body[1]
    if type(name) is not str:
        raise WireError("data[2].data[0]", f"event name must be a string, got {name!r}")
    if type(args) is not list:
        raise WireError("data[2].data[1]", "event arguments must be a vector")
    metadata = None
    if len(body) == 3:
        md = body[2]
        if type(md) is not list:
            raise WireError("data[2].data[2]", "event metadata must be a vector")
        pairs = []
        for i, kv in enumerate(md):
            if type(kv) is not list or len(kv) != 2 or type(kv[0]) is not Count:
                raise WireError(f"data[2].data[2].data[{i}]", "metadata entry must be a vector [count, value]")
            pairs.append((kv[0], kv[1]))
        metadata = tuple(pairs)
    return Event(name, tuple(args), metadata)


def _dumps(obj: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except orjson.JSONEncodeError as e:  # e.g. a lone surrogate in a str
        raise WireError("data", f"cannot be written as JSON ({e})") from None


def loads(text: str | bytes) -> Any:
    """JSON text -> Python data. orjson first; Python's json (strict=False) as the
    fallback for what Broker can emit but RFC 8259 forbids (raw control characters)
    and for integers beyond 64 bits (which the type checks then reject)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text, strict=False)
    except (ValueError, RecursionError, TypeError) as e:
        raise WireError("message", f"malformed JSON ({str(e)[:120]})") from None


def encode_ack(endpoint: str, version: str) -> str:
    return orjson.dumps({"type": "ack", "endpoint": endpoint, "version": version}).decode()


def encode_error(code: str, context: str) -> str:
    return orjson.dumps({"type": "error", "code": code, "context": context}).decode()


def encode_subscription(topics: list[str] | tuple[str, ...]) -> str:
    """The client's first message: a JSON array of topic prefixes ([] = publish only)."""
    for t in topics:
        if type(t) is not str or not t:
            raise WireError("subscription", f"topics must be non-empty strings, got {t!r}")
    return orjson.dumps(list(topics)).decode()


def decode_subscription(text: str | bytes) -> list[str]:
    data = loads(text)
    if type(data) is not list or not all(type(t) is str for t in data):
        raise _type_error("subscription", "must be a JSON array of strings", data)
    return data


DEFAULT = Codec()
decode_value = DEFAULT.decode_value
encode_value = DEFAULT.encode_value
decode_message = DEFAULT.decode_message
encode_data_message = DEFAULT.encode_data_message
encode_event_message = DEFAULT.encode_event_message
decode_event_message = DEFAULT.decode_event_message


def dumps_value(value: Any, codec: Codec = DEFAULT) -> str:
    """Compact JSON of one typed value (for tests and debugging)."""
    return _dumps(codec.encode_value(value))


def loads_value(text: str | bytes, codec: Codec = DEFAULT) -> Any:
    """Compact JSON of one typed value -> Python value."""
    return codec.decode_value(loads(text))
