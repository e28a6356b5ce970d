"""Hypothesis strategies: real seeds, mutated the way damaged files and hostile peers damage them."""

from __future__ import annotations

import json
import struct

import orjson
from hypothesis import strategies as st

from .targets import evidence_seeds, pcap_seeds

# values that break length and count fields
_INTERESTING = (0, 1, 2, 3, 4, 7, 8, 15, 16, 24, 64, 255, 256, 1500, 65535, 65536, 262144, 262145,
                0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


@st.composite
def mutated_bytes(draw, seeds: tuple[bytes, ...], max_mutations: int = 4) -> bytes:
    """A seed with a few mutations: bit flips, byte runs, length fields set to edge values,
    truncation, insertion, duplication of a slice, splicing with another seed."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, max_mutations))):
        kind = draw(st.sampled_from(("flip", "byte", "field", "truncate", "insert", "duplicate", "splice")))
        n = len(data)
        # mostly past the file header: a broken magic only ever tests "not a capture"
        low = 0 if n <= 24 or draw(st.integers(0, 9)) == 0 else 24
        at = draw(st.integers(low, max(n - 1, low)))
        if kind == "flip" and n:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and n:
            data[at] = draw(st.integers(0, 255))
        elif kind == "field" and n >= 4:
            at = min(at, n - 4)
            fmt = draw(st.sampled_from(("<I", ">I", "<H", ">H")))
            value = draw(st.sampled_from(_INTERESTING)) & (0xFFFF if fmt[1] == "H" else 0xFFFFFFFF)
            struct.pack_into(fmt, data, at, value)
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "duplicate" and n:
            ln = draw(st.integers(1, 256))
            data[at:at] = data[at:at + ln]
        elif kind == "splice":
            other = draw(st.sampled_from(seeds))
            cut = draw(st.integers(0, len(other)))
            data[at:] = other[cut:]
    return bytes(data)


def pcaps() -> st.SearchStrategy[bytes]:
    return mutated_bytes(pcap_seeds())


# ---- evidence: JSON-level mutations of real messages, and byte-level ones -------------------
_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                          st.floats(allow_nan=False), st.text(max_size=40))
_json = st.recursive(_json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                     max_leaves=12)
_typed = st.builds(lambda t, d: {"@data-type": t, "data": d},
                   st.sampled_from(["count", "integer", "real", "string", "address", "port", "timestamp",
                                    "timespan", "vector", "set", "table", "boolean", "none", "enum-value", "subnet"]),
                   _json)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@st.composite
def evidence_messages(draw) -> bytes:
    raw = draw(st.sampled_from(evidence_seeds()))
    if draw(st.booleans()):
        return draw(mutated_bytes((raw,), max_mutations=4))
    msg = orjson.loads(raw)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(msg))
        path = draw(st.sampled_from(paths[1:] or paths))
        parent = msg
        for p in path[:-1]:
            parent = parent[p]
        op = draw(st.sampled_from(("replace", "typed", "delete", "grow")))
        if op == "replace":
            parent[path[-1]] = draw(_json)
        elif op == "typed":
            parent[path[-1]] = draw(_typed)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], list):  # grow a vector: many packets, long heads
            parent[path[-1]] = parent[path[-1]] * draw(st.integers(2, 40))
    return json.dumps(msg, separators=(",", ":")).encode()  # json: integers beyond 64 bits too


# ---- annotate: EVE-shaped lines with fields of any type, and verdicts of any shape ----------
_eve_keys = st.sampled_from(["timestamp", "event_type", "src_ip", "src_port", "dest_ip", "dest_port", "proto",
                             "community_id", "flow", "flow_id", "app_proto", "msewatch"])
_good = {"timestamp": st.just("2023-11-14T22:13:21.000000+0000"), "src_ip": st.just("10.0.0.1"),
         "src_port": st.just(40000), "dest_ip": st.just("10.0.0.2"), "dest_port": st.just(6881),
         "proto": st.sampled_from(["TCP", "UDP", "ICMP"]), "community_id": st.sampled_from(["1:abc=", "1:n="]),
         "flow": st.just({"start": "2023-11-14T22:13:20.000000+0000"})}


@st.composite
def eve_lines(draw) -> bytes:
    kind = draw(st.sampled_from(("object", "object", "object", "json", "bytes")))
    if kind == "bytes":
        return draw(st.binary(max_size=60)).replace(b"\n", b"") + b"\n"
    if kind == "json":
        return json.dumps(draw(_json)).encode() + b"\n"
    obj = {k: draw(_good[k]) for k in _good if draw(st.booleans())}
    for k in draw(st.lists(_eve_keys, max_size=4)):
        obj[k] = draw(_json)
    line = json.dumps(obj, separators=(",", ":")).encode()  # json: >64-bit integers too
    return line + draw(st.sampled_from([b"\n", b"  \r\n", b" \n", b""]))


_verdict_keys = st.sampled_from(["type", "ts", "community_id", "proto", "orig_h", "orig_p", "resp_h", "resp_p",
                                 "label", "reasons"])


@st.composite
def verdicts(draw) -> list:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        v = {"type": "flow", "ts": 1700000000.0, "community_id": "1:abc=", "proto": "tcp", "orig_h": "10.0.0.1",
             "orig_p": 40000, "resp_h": "10.0.0.2", "resp_p": 6881, "label": "p2p_likely", "reasons": ["x=1"]}
        for k in draw(st.lists(_verdict_keys, max_size=3)):
            v[k] = draw(_json)
        out.append(v if draw(st.integers(0, 9)) else draw(_json))
    return out


def configs() -> st.SearchStrategy[bytes]:
    from msewatch.config import default_config_text

    return mutated_bytes((default_config_text().encode(), b"detect: {popcount_low: 3.4}\nhost: {windows: [1, 2, 3]}\n"))
