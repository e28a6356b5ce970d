"""The msewatch events on the Zeek wire (docs/evidence.md is the contract).

MSEWatch::flow_evidence   Zeek -> bridge, 21 flat typed arguments -> FlowEvidence; version 2
                          (what the package publishes) packs the per-packet vectors into
                          strings, version 1 (typed vectors) is still read
MSEWatch::verdict         bridge -> Zeek, from FlowVerdict
MSEWatch::host_verdict    bridge -> Zeek, from HostVerdict
MSEWatch::flow_labels     bridge -> Zeek, conn.log labels of flow verdicts sent without the rest
MSEWatch::hello           Zeek -> bridge, what the package understands (e.g. flow_labels)

Argument errors raise WireError with the argument's JSON location and name, e.g.
``data[2].data[1].data[4] (orig_p): port protocol must be tcp or udp, got '51413/icmp'``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import ipaddress
import re
from typing import Any

import orjson

from ..evidence import EVIDENCE_VERSION, EVIDENCE_VERSIONS, FlowEvidence, FlowKey
from ..verdict import FlowVerdict, HostVerdict
from .v1 import (
    DEFAULT,
    UTC,
    DataMessage,
    loads,
    Codec,
    Count,
    Event,
    Port,
    Timespan,
    WireError,
    _dumps,
    epoch_of,
    event_from_value,
    real_text,
    timestamp_of,
)

FLOW_EVIDENCE = "MSEWatch::flow_evidence"
VERDICT = "MSEWatch::verdict"
HOST_VERDICT = "MSEWatch::host_verdict"
FLOW_LABELS = "MSEWatch::flow_labels"
HELLO = "MSEWatch::hello"
# The feature a package's hello names when it handles MSEWatch::flow_labels.
FEATURE_FLOW_LABELS = "flow_labels"

# A flow verdict's protocol when there is no guess (contract: always a string;
# the Zeek scripts treat it like the "" older bridges sent).
NO_PROTOCOL = "unknown"

# (name, v1 type, element type for vectors) in contract order (docs/evidence.md)
EVIDENCE_ARGS: tuple[tuple[str, str, str | None], ...] = (
    ("version", "count", None),
    ("uid", "string", None),
    ("community_id", "string", None),
    ("orig_h", "address", None),
    ("orig_p", "port", None),
    ("resp_h", "address", None),
    ("resp_p", "port", None),
    ("ts", "timestamp", None),
    ("sizes", "vector", "integer"),
    ("times", "vector", "timespan"),
    ("bursts", "vector", "integer"),
    ("orig_heads", "vector", "string"),
    ("resp_heads", "vector", "string"),
    ("orig_pkts", "count", None),
    ("resp_pkts", "count", None),
    ("orig_bytes", "count", None),
    ("resp_bytes", "count", None),
    ("duration", "timespan", None),
    ("handshake", "boolean", None),
    ("closed", "boolean", None),
    ("complete", "boolean", None),
)

# Version 2: the same arguments, the per-packet vectors (8-12) packed into one string each
# (pack_evidence_fields / unpack_* below).
EVIDENCE_ARGS_V2: tuple[tuple[str, str, str | None], ...] = tuple(
    (name, "string", None) if 8 <= i <= 12 else (name, typ, elem) for i, (name, typ, elem) in enumerate(EVIDENCE_ARGS)
)
EVIDENCE_ARGS_BY_VERSION = {1: EVIDENCE_ARGS, 2: EVIDENCE_ARGS_V2}

# --------------------------------------------------------------------------- evidence v2
#
# sizes, bursts   signed decimal integers (int64, no "+", no leading zeros, no "-0") joined
#                 by ","; "" when there are none
# times           nanoseconds since ts, non-negative decimal integers, joined by ","
# *_heads         each head's hex followed by ",": "" = no head, "," = one empty head
#                 (a datagram whose payload the snap length cut off entirely)
#
# The compiled decoder (msewatch/_wire.c) reads exactly this grammar too.

_INT = r"(?:0|-?[1-9][0-9]{0,18})"
_UINT = r"(?:0|[1-9][0-9]{0,18})"
_PACKED_INTS = re.compile(f"{_INT}(?:,{_INT})*")
_PACKED_UINTS = re.compile(f"{_UINT}(?:,{_UINT})*")
_HEX_AND_COMMA = re.compile(r"[0-9a-fA-F,]*")
_BAD_HEADS = "must be hex heads, each followed by ','"
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1


def _unpack(text: str, grammar: re.Pattern, bad: str, too_big: str) -> tuple[int, ...]:
    """Decimal integers joined by ',' that match `grammar` and fit in 64 signed bits."""
    if not text:
        return ()
    if grammar.fullmatch(text) is None:
        raise ValueError(bad)
    out = tuple(map(int, text.split(",")))
    if min(out) < _INT_MIN or max(out) > _INT_MAX:
        raise ValueError(too_big)
    return out


def unpack_ints(text: str) -> tuple[int, ...]:
    """"517,-300" -> (517, -300); ValueError unless the v2 grammar of sizes and bursts."""
    return _unpack(text, _PACKED_INTS, "must be signed decimal integers joined by ','", "an integer exceeds 64 bits")


def unpack_times(text: str) -> tuple[float, ...]:
    """"0,358104706" (ns) -> (0.0, 0.358104706) seconds; ValueError unless the v2 grammar."""
    ns = _unpack(text, _PACKED_UINTS, "must be non-negative decimal nanoseconds joined by ','",
                 "a time exceeds 64 bits of nanoseconds")
    return tuple(n / 1e9 for n in ns)


def unpack_heads(text: str) -> tuple[bytes, ...]:
    """"0a1b,," -> (bytes.fromhex("0a1b"), b""); ValueError unless the v2 grammar,
    (?:(?:[0-9a-fA-F]{2})*,)*, checked in three cheaper steps: hex digits and ',' only, the
    last head ends with ',', and bytes.fromhex rejects an odd count of digits."""
    if not text:
        return ()
    if text[-1] != "," or _HEX_AND_COMMA.fullmatch(text) is None:
        raise ValueError(_BAD_HEADS)
    try:
        return tuple(map(bytes.fromhex, text[:-1].split(",")))
    except ValueError:
        raise ValueError(_BAD_HEADS) from None


def pack_evidence_fields(ev: FlowEvidence) -> tuple[str, str, str, str, str]:
    """(sizes, times, bursts, orig_heads, resp_heads) of ev as version 2 carries them; times
    rounded to nanoseconds, as the v1 timespans were (Timespan.from_seconds)."""
    return (
        ",".join(map(str, ev.sizes)),
        ",".join(str(round(t * 1_000_000_000)) for t in ev.times),
        ",".join(map(str, ev.bursts)),
        "".join(h.hex() + "," for h in ev.orig_heads),
        "".join(h.hex() + "," for h in ev.resp_heads),
    )

_PYCHECK: dict[str, Any] = {
    "count": lambda v: type(v) is Count,
    "integer": lambda v: type(v) is int,
    "string": lambda v: type(v) is str,
    "address": lambda v: isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)),
    "port": lambda v: type(v) is Port,
    "timestamp": lambda v: isinstance(v, _dt.datetime),
    "timespan": lambda v: type(v) is Timespan,
    "boolean": lambda v: type(v) is bool,
    "vector": lambda v: type(v) is list,
}


def _arg_path(i: int) -> str:
    return f"data[2].data[1].data[{i}]"


def _bad(i: int, reason: str) -> WireError:
    return WireError(f"{_arg_path(i)} ({EVIDENCE_ARGS[i][0]})", reason)


def evidence_from_event(event: Event) -> FlowEvidence:
    """MSEWatch::flow_evidence -> FlowEvidence, checking every argument's type."""
    if event.name != FLOW_EVIDENCE:
        raise WireError("data[2].data[0]", f"expected event {FLOW_EVIDENCE}, got {event.name!r}")
    a = event.args
    if len(a) != len(EVIDENCE_ARGS):
        raise WireError("data[2].data[1]", f"{FLOW_EVIDENCE} takes {len(EVIDENCE_ARGS)} arguments, got {len(a)}")
    if type(a[0]) is not Count:
        raise _bad(0, f"must be a count, got {type(a[0]).__name__} {a[0]!r:.60}")
    version = int(a[0])
    spec = EVIDENCE_ARGS_BY_VERSION.get(version)
    if spec is None:
        raise _bad(0, f"evidence version {version} is not supported (this bridge speaks"
                      f" {' and '.join(map(str, EVIDENCE_VERSIONS))})")
    for i, (name, typ, elem) in enumerate(spec):
        v = a[i]
        if not _PYCHECK[typ](v):
            raise _bad(i, f"must be a {typ}" + (f" of {elem}" if elem else "") + f", got {type(v).__name__} {v!r:.60}")
        if elem is not None:
            check = _PYCHECK[elem]
            for j, x in enumerate(v):
                if not check(x):
                    raise WireError(f"{_arg_path(i)}.data[{j}] ({name})", f"must be a {elem}, got {x!r:.60}")
    orig_p: Port = a[4]
    resp_p: Port = a[6]
    if orig_p.proto not in ("tcp", "udp"):
        raise _bad(4, f"port protocol must be tcp or udp, got {str(orig_p)!r}")
    if resp_p.proto != orig_p.proto:
        raise _bad(6, f"port protocol {resp_p.proto} differs from orig_p's {orig_p.proto}")
    if version == 1:
        sizes = tuple(a[8])
        times = tuple(t.ns / 1e9 for t in a[9])
        bursts = tuple(a[10])
        heads = []
        for i in (11, 12):
            hs = []
            for j, h in enumerate(a[i]):
                try:
                    hs.append(bytes.fromhex(h))
                except ValueError:
                    raise WireError(f"{_arg_path(i)}.data[{j}] ({EVIDENCE_ARGS[i][0]})", f"head must be hex, got {h!r:.60}") from None
            heads.append(tuple(hs))
    else:
        unpacked = []
        for i, unpack in ((8, unpack_ints), (9, unpack_times), (10, unpack_ints), (11, unpack_heads),
                          (12, unpack_heads)):
            try:
                unpacked.append(unpack(a[i]))
            except ValueError as e:
                raise _bad(i, f"{e}, got {a[i]!r:.60}") from None
        sizes, times, bursts = unpacked[0], unpacked[1], unpacked[2]
        heads = unpacked[3:]
    if len(times) != len(sizes):
        raise _bad(9, f"has {len(times)} entries but sizes has {len(sizes)}")
    return FlowEvidence(
        key=FlowKey(orig_p.proto, str(a[3]), orig_p.number, str(a[5]), resp_p.number),
        uid=a[1],
        community_id=a[2],
        ts=epoch_of(a[7]),
        sizes=sizes,
        times=times,
        bursts=bursts,
        orig_heads=heads[0],
        resp_heads=heads[1],
        orig_pkts=int(a[13]),
        resp_pkts=int(a[14]),
        orig_bytes=int(a[15]),
        resp_bytes=int(a[16]),
        duration=a[17].ns / 1e9,
        handshake=a[18],
        closed=a[19],
        complete=a[20],
    )


def evidence_to_event(ev: FlowEvidence, version: int = EVIDENCE_VERSION) -> Event:
    """FlowEvidence -> MSEWatch::flow_evidence of `version` (2: what the Zeek package sends;
    1: what older packages sent); used by the fake Zeek in tests and by the benchmarks."""
    k = ev.key
    if version == 2:
        packed: tuple = pack_evidence_fields(ev)
    elif version == 1:
        packed = (
            list(ev.sizes),
            [Timespan.from_seconds(t) for t in ev.times],
            list(ev.bursts),
            [h.hex() for h in ev.orig_heads],
            [h.hex() for h in ev.resp_heads],
        )
    else:
        raise ValueError(f"no evidence version {version}")
    return Event(
        FLOW_EVIDENCE,
        (
            Count(version),
            ev.uid,
            ev.community_id,
            ipaddress.ip_address(k.orig_h),
            Port(k.orig_p, k.proto),
            ipaddress.ip_address(k.resp_h),
            Port(k.resp_p, k.proto),
            timestamp_of(ev.ts),
            *packed,
            Count(ev.orig_pkts),
            Count(ev.resp_pkts),
            Count(ev.orig_bytes),
            Count(ev.resp_bytes),
            Timespan.from_seconds(ev.duration),
            bool(ev.handshake),
            bool(ev.closed),
            bool(ev.complete),
        ),
    )


def verdict_to_event(v: FlowVerdict) -> Event:
    """MSEWatch::verdict(uid, orig_h, orig_p, resp_h, resp_p, label, protocol, probability,
    reasons, decided_at, decided_at_packet); protocol None or "" -> "unknown"."""
    k = v.key
    return Event(
        VERDICT,
        (
            v.uid,
            ipaddress.ip_address(k.orig_h),
            Port(k.orig_p, k.proto),
            ipaddress.ip_address(k.resp_h),
            Port(k.resp_p, k.proto),
            v.label,
            v.protocol or NO_PROTOCOL,
            float(v.probability),
            list(v.reasons),
            timestamp_of(v.decided_at),
            Count(max(0, int(v.decided_at_packet))),
        ),
    )


def host_verdict_to_event(v: HostVerdict) -> Event:
    """MSEWatch::host_verdict(host, label, score, probability, reasons, ts)."""
    return Event(
        HOST_VERDICT,
        (
            ipaddress.ip_address(v.host),
            v.label,
            float(v.score),
            float(v.probability),
            list(v.reasons),
            timestamp_of(v.ts),
        ),
    )


def verdict_event(v: FlowVerdict | HostVerdict) -> Event:
    if isinstance(v, FlowVerdict):
        return verdict_to_event(v)
    if isinstance(v, HostVerdict):
        return host_verdict_to_event(v)
    raise TypeError(f"not a verdict: {v!r}")


def encode_verdict(v: FlowVerdict | HostVerdict, topic: str, codec: Codec = DEFAULT) -> str:
    """A verdict as the compact JSON text of a data-message event on `topic` (the same
    bytes as codec.encode_event_message(topic, verdict_event(v)), built in one pass)."""
    return _dumps(_verdict_tree(v, topic, codec))


def encode_verdict_bytes(v: FlowVerdict | HostVerdict, topic: str, codec: Codec = DEFAULT) -> bytes:
    """encode_verdict's text as UTF-8 bytes (what a WebSocket text frame carries): flow
    verdicts by the compiled encoder when it is built, byte-identical (tests/wire)."""
    if type(v) is FlowVerdict:
        fast = _compiled_codec(codec)
        if fast is not None:
            out = fast[1].encode(v, topic)
            if out is not None:
                return out
    try:
        return orjson.dumps(_verdict_tree(v, topic, codec))
    except orjson.JSONEncodeError as e:  # e.g. a lone surrogate in a str
        raise WireError("data", f"cannot be written as JSON ({e})") from None


def conn_label(v: FlowVerdict) -> str:
    """A flow verdict's conn.log label: ``label`` or ``label:protocol`` (verdicts.zeek's
    conn_label_of)."""
    protocol = v.protocol
    return f"{v.label}:{protocol}" if protocol and protocol != NO_PROTOCOL else v.label


def packable(uid: str, label: str) -> bool:
    """Whether a uid and label can travel in a packed flow_labels message (space-separated:
    neither may be empty or hold a blank or a control character)."""
    return bool(uid) and bool(label) and uid.isprintable() and label.isprintable() and " " not in uid and " " not in label


def encode_flow_labels(uids: list[str], labels: list[str], topic: str) -> bytes:
    """MSEWatch::flow_labels(uids, labels) on `topic`: the conn.log labels of flow verdicts
    not sent in full, as two strings of space-separated items (the i-th label is the i-th
    uid's). One string each, not two vectors: Zeek converts a message value by value, and
    its script splits a string for about half of what a vector's elements cost it."""
    return orjson.dumps({
        "type": "data-message",
        "topic": topic,
        "@data-type": "vector",
        "data": [_COUNT_1, _COUNT_1, _t("vector", [_t("string", FLOW_LABELS), _t("vector", [
            _t("string", " ".join(uids)), _t("string", " ".join(labels))])])],
    })


def verdict_key(v: FlowVerdict | HostVerdict) -> str:
    """What a verdict is about (flow uid or host address), for logs."""
    return v.uid if isinstance(v, FlowVerdict) else f"host {v.host}"


# --------------------------------------------------------------------------- hot path
#
# The bridge decodes every evidence message and encodes every verdict. The generic codec
# walks each typed value through the type table (about 45 per evidence event); the two
# functions below do the same for exactly these two shapes in one pass. They accept only
# what the generic path accepts: `fast_evidence` returns None at the first surprise and
# the caller then takes the generic path, which produces the precise WireError. Tests
# hold the two paths equal (tests/wire/test_events.py).

_COUNT_1 = {"@data-type": "count", "data": 1}
_EVIDENCE_NAME = {"@data-type": "string", "data": FLOW_EVIDENCE}
_SPAN_UNIT = {"ns": 1, "us": 1_000, "ms": 1_000_000}


def _span_ns(text: str) -> int:
    unit = _SPAN_UNIT.get(text[-2:])
    digits = text[:-2]
    if unit is not None and digits.isdigit() and digits.isascii() and len(digits) < 19:
        ns = int(digits) * unit
        if ns >= 1 << 63:
            raise ValueError("timespan out of range")
        return ns
    from .v1 import parse_timespan

    return parse_timespan(text)


def _typed(obj: Any, dtype: str) -> Any:
    if type(obj) is not dict or len(obj) != 2 or obj.get("@data-type") != dtype:
        raise LookupError
    return obj["data"]


def _port(obj: Any) -> tuple[int, str]:
    text = _typed(obj, "port")
    num, sep, proto = text.partition("/")
    if not (sep and num.isdigit() and num.isascii() and len(num) <= 5 and proto in ("tcp", "udp")):
        raise LookupError
    n = int(num)
    if n > 65535:
        raise LookupError
    return n, proto


def _datas(obj: Any, dtype: str) -> list:
    """The `data` of every element of a vector whose elements are all of `dtype`."""
    out = []
    append = out.append
    data = _typed(obj, "vector")
    if data.__class__ is not list:  # a dict or string would iterate too: the generic path rejects them
        raise LookupError
    for x in data:
        if x.__class__ is not dict or len(x) != 2 or x.get("@data-type") != dtype:
            raise LookupError
        append(x["data"])
    return out


def _ints(obj: Any) -> tuple[int, ...]:
    out = _datas(obj, "integer")
    for v in out:
        if v.__class__ is not int:
            raise LookupError
    if out and (min(out) < -(1 << 63) or max(out) >= 1 << 63):
        raise LookupError
    return tuple(out)


@functools.lru_cache(maxsize=65536)
def _norm_addr(text: str) -> str:
    """Canonical form of an address string (ValueError if it is none); hosts repeat."""
    if "/" in text or "%" in text:
        raise ValueError(f"not an address: {text!r}")
    return str(ipaddress.ip_address(text))


def _count(obj: Any) -> int:
    v = _typed(obj, "count")
    if type(v) is not int or not 0 <= v < (1 << 64):
        raise LookupError
    return v


def _bool(obj: Any) -> bool:
    v = _typed(obj, "boolean")
    if type(v) is not bool:
        raise LookupError
    return v


def _str(obj: Any) -> str:
    v = _typed(obj, "string")
    if type(v) is not str:
        raise LookupError
    return v


def fast_evidence(msg: Any, codec: Codec = DEFAULT) -> FlowEvidence | None:
    """A JSON-loaded data-message -> FlowEvidence, or None if it is anything but a
    well-formed MSEWatch::flow_evidence event (then use the generic path)."""
    try:
        if type(msg) is not dict or len(msg) != 4 or msg["type"] != "data-message" or type(msg["topic"]) is not str:
            return None
        if msg["@data-type"] != "vector":
            return None
        outer = msg["data"]
        if type(outer) is not list or len(outer) != 3 or outer[0] != _COUNT_1 or outer[1] != _COUNT_1:
            return None
        if type(outer[0]["data"]) is not int or type(outer[1]["data"]) is not int:  # 1.0 / true == 1
            return None
        body = _typed(outer[2], "vector")
        if type(body) is not list or len(body) not in (2, 3):
            return None
        if body[0] != _EVIDENCE_NAME:
            return None
        if len(body) == 3:
            codec.decode_value(body[2])  # rare: metadata, checked generically
            if type(body[2]["data"]) is not list:
                return None
            for kv in body[2]["data"]:
                if type(kv["data"]) is not list or len(kv["data"]) != 2 or kv["data"][0].get("@data-type") != "count":
                    return None
        a = _typed(body[1], "vector")
        if type(a) is not list or len(a) != 21:
            return None
        version = _count(a[0])
        if version not in EVIDENCE_VERSIONS or type(a[0]["data"]) is not int:
            return None
        uid, cid = _str(a[1]), _str(a[2])
        orig_h = _typed(a[3], "address")
        resp_h = _typed(a[5], "address")
        if type(orig_h) is not str or type(resp_h) is not str:
            return None
        orig_h = _norm_addr(orig_h)
        resp_h = _norm_addr(resp_h)
        op, oproto = _port(a[4])
        rp, rproto = _port(a[6])
        if oproto != rproto:
            return None
        ts_text = _typed(a[7], "timestamp")
        if type(ts_text) is not str:
            return None
        ts = epoch_of(codec.parse_timestamp(ts_text))
        if version == 2:
            sizes = unpack_ints(_str(a[8]))
            times = unpack_times(_str(a[9]))
            bursts = unpack_ints(_str(a[10]))
            heads = [unpack_heads(_str(a[11])), unpack_heads(_str(a[12]))]
        else:
            sizes = _ints(a[8])
            spans = []
            for t in _datas(a[9], "timespan"):
                if t.__class__ is not str:
                    return None
                spans.append(_span_ns(t) / 1e9)
            times = tuple(spans)
            bursts = _ints(a[10])
            heads = []
            for i in (11, 12):
                hs = _datas(a[i], "string")
                for h in hs:
                    if h.__class__ is not str:
                        return None
                heads.append(tuple(bytes.fromhex(h) for h in hs))
        if len(times) != len(sizes):
            return None
        counters = [_count(a[i]) for i in (13, 14, 15, 16)]
        dur = _typed(a[17], "timespan")
        if type(dur) is not str:
            return None
        return FlowEvidence(
            key=FlowKey(oproto, orig_h, op, resp_h, rp),
            uid=uid,
            community_id=cid,
            ts=ts,
            sizes=sizes,
            times=times,
            bursts=bursts,
            orig_heads=heads[0],
            resp_heads=heads[1],
            orig_pkts=counters[0],
            resp_pkts=counters[1],
            orig_bytes=counters[2],
            resp_bytes=counters[3],
            duration=_span_ns(dur) / 1e9,
            handshake=_bool(a[18]),
            closed=_bool(a[19]),
            complete=_bool(a[20]),
        )
    except (LookupError, TypeError, ValueError, AttributeError, WireError):
        return None


# With the compiled decoder, larger messages are read only when they are a well-formed
# MSEWatch::flow_evidence (its work is bounded by the budget); anything else that large is
# rejected unread: the generic codec would take seconds of CPU for a 16 MiB frame. The
# pure-Python bridge reads them all, slowly (docs/zeek.md).
MAX_GENERIC_MESSAGE = 1 << 20


def _compiled_codec(codec: Codec) -> tuple[Any, Any] | None:
    """(EvidenceDecoder, VerdictEncoder) of msewatch._wire for this codec, or None."""
    fast = codec.__dict__.get("_msewatch_wire")
    if fast is None:
        from .. import compiled

        mod = compiled.module("_wire")
        if mod is None:
            fast = False
        else:
            utc = codec.naive_tz is UTC

            def parse_ts(text: str) -> float:
                return epoch_of(codec.parse_timestamp(text))

            fast = (mod.EvidenceDecoder(FlowEvidence, FlowKey, _norm_addr, parse_ts, utc),
                    mod.VerdictEncoder(_norm_addr, utc))
        codec.__dict__["_msewatch_wire"] = fast
    return fast or None


def decode_evidence_message(raw: str | bytes, codec: Codec = DEFAULT) -> FlowEvidence | Event | Any:
    """One server message -> FlowEvidence (fast path), else whatever the generic codec
    makes of it (Ack / ErrorMessage / DataMessage); raises WireError if malformed.

    The compiled decoder (msewatch/_wire.c) reads the canonical flow_evidence form; what it
    does not read goes the Python way, which is the reference (tests/wire hold them equal)."""
    fast = _compiled_codec(codec)
    if fast is not None:
        ev = fast[0].decode(raw)
        if ev is not None:
            return ev
        if len(raw) > MAX_GENERIC_MESSAGE:
            raise WireError("message", f"{len(raw)} bytes and not a well-formed {FLOW_EVIDENCE}: larger messages"
                                       f" than {MAX_GENERIC_MESSAGE} bytes are read only in that form")
    obj = loads(raw)
    ev = fast_evidence(obj, codec)
    if ev is not None:
        return ev
    msg = codec.decode_message(raw)
    if isinstance(msg, DataMessage):
        event = event_from_value(msg.value)
        if event.name == FLOW_EVIDENCE:
            return evidence_from_event(event)
        return event
    return msg


def _t(dtype: str, data: Any) -> dict:
    return {"@data-type": dtype, "data": data}


def _addr(text: str) -> dict:
    return _t("address", _norm_addr(text))


def _real(x: float) -> dict:
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise WireError("data", f"real must be finite, got {x}")
    return _t("real", orjson.Fragment(real_text(x)))


def _verdict_tree(v: FlowVerdict | HostVerdict, topic: str, codec: Codec) -> dict:
    if type(topic) is not str:
        raise WireError("topic", f"topic must be a string, got {topic!r}")
    if isinstance(v, FlowVerdict):
        k = v.key
        proto = k.proto
        str(Port(k.orig_p, proto)), str(Port(k.resp_p, proto))  # validates numbers and protocol
        name = VERDICT
        args = [
            _t("string", str(v.uid)),
            _addr(k.orig_h),
            _t("port", f"{k.orig_p}/{proto}"),
            _addr(k.resp_h),
            _t("port", f"{k.resp_p}/{proto}"),
            _t("string", str(v.label)),
            _t("string", v.protocol or NO_PROTOCOL),
            _real(v.probability),
            _t("vector", [_t("string", str(r)) for r in v.reasons]),
            _t("timestamp", codec.format_timestamp(timestamp_of(v.decided_at))),
            _t("count", max(0, int(v.decided_at_packet))),
        ]
    elif isinstance(v, HostVerdict):
        name = HOST_VERDICT
        args = [
            _addr(v.host),
            _t("string", str(v.label)),
            _real(v.score),
            _real(v.probability),
            _t("vector", [_t("string", str(r)) for r in v.reasons]),
            _t("timestamp", codec.format_timestamp(timestamp_of(v.ts))),
        ]
    else:
        raise TypeError(f"not a verdict: {v!r}")
    return {
        "type": "data-message",
        "topic": topic,
        "@data-type": "vector",
        "data": [_COUNT_1, _COUNT_1, _t("vector", [_t("string", name), _t("vector", args)])],
    }
