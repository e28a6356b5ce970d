"""Elastic Common Schema (ECS) documents for msewatch verdicts and annotated Suricata EVE events.

    flow verdict  -> event.dataset msewatch.flow   (source/destination/network/related + msewatch.*)
    host verdict  -> event.dataset msewatch.host   (host.ip/related + msewatch.*)
    EVE line      -> event.dataset msewatch.eve    (Suricata's event mapped to ECS, rule.* for
                                                     alerts, event.original = the line, msewatch.*
                                                     when msewatch has a verdict for its flow)

docs/siem.md is the mapping in words (with the Splunk CIM aliases); the ECS field types
come from data/ecs_fields.yaml (a subset of Elastic's ecs_flat.yml); `msewatch.*` is a custom
field set whose types `index_template()` makes explicit.

Typed reasons. The engine's reasons are "name=value" strings; `parse_reasons` turns them
into one object, `msewatch.reasons`:
  * a reason is split at its first "="; a reason without "=" has the value true;
  * a name listed in REASON_TYPES gets that type: keyword names stay strings as written
    (hashes, peer_id prefixes, layouts: "0e00ed..", "-TR3000-", "68@4"), long and float
    names become numbers;
  * any other name is typed by its value: true/false -> boolean; an integer literal
    without leading zeros -> long (a string when it does not fit in 64 bits); a decimal
    literal without leading zeros (optional exponent) -> float; anything else -> string;
  * a value that does not parse as its declared number type stays a string (the index
    template maps with ignore_malformed, so such a document is still indexed);
  * a name that occurs more than once gives an array of its values in order (all strings
    when their types differ, so an Elasticsearch field never sees two types in one array).
"""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

import orjson

from . import __version__
from . import verdict_fields as vf

MODULE = "msewatch"
OBSERVER = {"product": "msewatch", "type": "ids", "version": __version__}
SURICATA_OBSERVER = {"vendor": "OISF", "product": "Suricata", "type": "ids"}
#: our Suricata rule pack's sid range (suricata/rules.py SID_MIN..SID_MAX)
RULESET_SIDS = (9470000, 9470999)

#: msewatch protocol -> ECS network.protocol (the application protocol, lowercase). uTP carries
#: the BitTorrent peer wire, so it maps to bittorrent; dht follows Suricata's app_proto name.
#: Protocols not listed (tls, ssh, http, dns, quic, ...) keep their name; "unknown" sets none.
NETWORK_PROTOCOL = {
    "bt_mse": "bittorrent",
    "bt_plain": "bittorrent",
    "utp": "bittorrent",
    "dht": "bittorrent-dht",
    "tracker": "bittorrent-tracker",
    "lsd": "bittorrent-lsd",
}

_L, _F, _K = "long", "float", "keyword"
#: Declared types of the reasons the detectors and scorers write today (detect/, score/,
#: engine.py). Keeping a name's type fixed keeps the Elasticsearch mapping stable.
REASON_TYPES: dict[str, str] = {
    # observation values (the feature's f_i; weights in data/default.yaml scoring.weights)
    **{n: _F for n in (
        "mse_handshake", "mse_partial", "fully_encrypted", "bt_handshake", "bt_peerwire", "dht_krpc",
        "utp_header", "utp_coherent", "udp_tracker", "http_tracker", "lsd", "tls_like", "ssh_like",
        "http_like", "host_context")},
    # measurements
    **{n: _F for n in ("popcount", "popcount_orig", "popcount_resp", "host_score")},
    # host verdict reasons
    **{n: _F for n in ("p2p_flows", "encrypted_peerlike", "discovery", "discovery_near_encrypted")},
    **{n: _L for n in ("flows", "remote_ips_10s", "remote_ips_2m", "remote_ips_30m", "remote_ports_2m")},
    # counts, sizes and 0/1 flags
    **{n: _L for n in (
        "head_len", "head_captured", "burst1", "burst2", "burst3", "burst4", "burst3_open", "burst4_open",
        "resp_random", "start_seen", "one_sided", "announce", "connect", "connect_reply", "scrape_hashes",
        "peer_id", "compact", "event", "supportcrypto", "requirecrypto", "bep42_ip", "dht", "ext_bep10", "fast",
        "info_hash_match", "ack_matches_syn", "ack_progress", "conn_id_pair", "payload_bt_handshake",
        "payload_random", "seq_progress", "syn", "pkts")},
    # identifiers, layouts and kinds: strings even when they look like numbers
    **{n: _K for n in (
        "bt_len", "client", "dir", "dst", "first_bytes", "host_p2p_near", "info_hash", "infohash",
        "orig_send_id", "orig_types", "peer_id_prefix", "q", "request", "resp_conn_id", "start", "step3",
        "step4", "y",
        # peer_cache=<value> is both the observation value and, a second time, the kind of match
        # (endpoint / ip_pair): one name, two meanings, so it is a keyword array
        "peer_cache")},
}

_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")
_I64 = (-(2**63), 2**63 - 1)


def _as_long(s: str) -> int | None:
    if _INT.match(s):
        n = int(s)
        if _I64[0] <= n <= _I64[1]:
            return n
    return None


def _as_float(s: str) -> float | None:
    if _FLOAT.match(s):
        x = float(s)
        if math.isfinite(x):
            return x
    return None


def reason_value(name: str, raw: str) -> Any:
    """The typed value of one reason (module docstring: the rule)."""
    declared = REASON_TYPES.get(name)
    if declared == _K:
        return raw
    if declared == _L:
        n = _as_long(raw)
        if n is None and (x := _as_float(raw)) is not None and x.is_integer() and abs(x) < 2**53:
            n = int(x)  # "12.0" from a .0f/.1f format
        return raw if n is None else n
    if declared == _F:
        x = _as_float(raw)
        return raw if x is None else x
    if raw in ("true", "false"):
        return raw == "true"
    if _INT.match(raw):  # an integer; beyond 64 bits it stays as written (no float rounding)
        n = _as_long(raw)
        return raw if n is None else n
    x = _as_float(raw)
    return raw if x is None else x


def parse_reasons(reasons: Iterable[Any]) -> dict[str, Any]:
    """["a=1", "b=x", "a=2"] -> {"a": [1, 2], "b": "x"} (module docstring: the rule)."""
    out: dict[str, Any] = {}
    multi: set[str] = set()
    for r in reasons or ():
        if not isinstance(r, str):
            continue
        name, eq, raw = r.partition("=")
        name = name.strip()
        if not name:
            continue
        value: Any = reason_value(name, raw) if eq else True
        if name not in out:
            out[name] = value
        elif name in multi:
            out[name].append(value)
        else:
            out[name] = [out[name], value]
            multi.add(name)
    for name in multi:
        vals = out[name]
        if len({type(v) for v in vals}) > 1:
            out[name] = [v if isinstance(v, str) else _text(v) for v in vals]
    return out


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


def iso(ts: float) -> str:
    """Epoch seconds -> ISO 8601 in UTC with microseconds and a Z (an ECS `date`)."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _num(x: Any) -> float | None:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None


def _ip(a: Any) -> str | None:
    if not isinstance(a, str):
        return None
    try:
        return ipaddress.ip_address(a).compressed
    except ValueError:
        return None


def _port(p: Any) -> int | None:
    return p if isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 65535 else None


def _count(n: Any) -> int | None:
    return n if isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= _I64[1] else None


def _endpoints(doc: dict, src: Any, sport: Any, dst: Any, dport: Any) -> list[str]:
    ips = []
    for side, a, p in (("source", src, sport), ("destination", dst, dport)):
        ip, port = _ip(a), _port(p)
        if ip is not None or port is not None:
            d = doc.setdefault(side, {})
            if ip is not None:
                d["ip"] = ip
                ips.append(ip)
            if port is not None:
                d["port"] = port
    if ips:
        doc["related"] = {"ip": list(dict.fromkeys(ips))}
        doc.setdefault("network", {})["type"] = "ipv6" if ":" in ips[0] else "ipv4"
    return ips


_IANA = {"tcp": "6", "udp": "17", "icmp": "1", "ipv6-icmp": "58", "sctp": "132"}


def _transport(doc: dict, proto: Any) -> None:
    if isinstance(proto, str) and proto:
        t = proto.lower()
        net = doc.setdefault("network", {})
        net["transport"] = t
        if t in _IANA:
            net["iana_number"] = _IANA[t]


def network_protocol(protocol: str) -> str | None:
    """ECS network.protocol for an msewatch protocol (None for "unknown")."""
    if protocol == vf.UNKNOWN_PROTOCOL:
        return None
    return NETWORK_PROTOCOL.get(protocol, protocol.lower())


# ------------------------------------------------------------------------------ msewatch.*
def msewatch_flow(v: dict) -> dict:
    """The typed `msewatch` object of a flow verdict (also what annotated EVE events carry)."""
    own, ctx = vf.families(v)
    m: dict[str, Any] = {"kind": "flow", "uid": v.get("uid"), "label": v.get("label"),
                         "protocol": vf.protocol(v)}
    fam = vf.client_family(v)
    if fam is not None:
        m["client_family"] = fam
        m["client"] = vf.client_prefix(v)
    for k in ("probability", "flow_probability", "host_score"):
        x = _num(v.get(k))
        if x is not None:
            m[k] = x
    d = _num(v.get("decided_at"))
    if d is not None:
        m["decided_at"] = iso(d)
    n = _count(v.get("decided_at_packet"))
    if n is not None:
        m["decided_at_packet"] = n
    m["families"] = list(dict.fromkeys(own + ctx))
    m["families_own"] = own
    m["families_context"] = ctx
    m["reasons"] = parse_reasons(v.get("reasons") or ())
    return {k: val for k, val in m.items() if val is not None}


def msewatch_host(v: dict) -> dict:
    m: dict[str, Any] = {"kind": "host", "label": v.get("label")}
    for k, out in (("probability", "probability"), ("score", "host_score")):
        x = _num(v.get(k))
        if x is not None:
            m[out] = x
    m["reasons"] = parse_reasons(v.get("reasons") or ())
    return {k: val for k, val in m.items() if val is not None}


# ------------------------------------------------------------------------------ verdicts
def _base(dataset: str, ts: float | None, kind: str, category: list[str], etype: list[str]) -> dict:
    return {
        "@timestamp": iso(ts) if ts is not None else iso(datetime.now(timezone.utc).timestamp()),
        "ecs": {"version": ecs_version()},
        "event": {"kind": kind, "category": category, "type": etype, "module": MODULE, "dataset": dataset},
    }


def flow_to_ecs(v: dict) -> dict:
    """ECS document of one flow verdict; @timestamp is when it was decided."""
    m = msewatch_flow(v)
    alert = m.get("label") == "p2p_likely"
    app = network_protocol(m["protocol"])
    category = ["network", "intrusion_detection"] if alert else ["network"]
    etype = ["info"] + (["protocol"] if app else [])
    ts = _num(v.get("decided_at"))
    doc = _base("msewatch.flow", ts if ts is not None else _num(v.get("ts")), "alert" if alert else "event",
                category, etype)
    start = _num(v.get("ts"))
    if start is not None:
        doc["event"]["start"] = iso(start)
    _endpoints(doc, v.get("orig_h"), v.get("orig_p"), v.get("resp_h"), v.get("resp_p"))
    _transport(doc, v.get("proto"))
    net = doc.setdefault("network", {})
    if isinstance(v.get("community_id"), str) and v["community_id"]:
        net["community_id"] = v["community_id"]
    if app:
        net["protocol"] = app
    doc["observer"] = dict(OBSERVER)
    p = m.get("probability")
    doc["message"] = (
        f"{m.get('label')} {m['protocol']} {v.get('proto')} {v.get('orig_h')}:{v.get('orig_p')} -> "
        f"{v.get('resp_h')}:{v.get('resp_p')}" + (f" P={p:.3f}" if p is not None else "")
    )
    doc["msewatch"] = m
    return doc


def host_to_ecs(v: dict) -> dict:
    """ECS document of one host verdict."""
    m = msewatch_host(v)
    alert = m.get("label") == "p2p_host"
    doc = _base("msewatch.host", _num(v.get("ts")), "alert" if alert else "event", ["host"], ["info"])
    ip = _ip(v.get("host"))
    if ip is not None:
        doc["host"] = {"ip": [ip]}
        doc["related"] = {"ip": [ip]}
    doc["observer"] = dict(OBSERVER)
    p = m.get("probability")
    doc["message"] = f"host {v.get('host')} {m.get('label')}" + (f" P={p:.3f}" if p is not None else "")
    doc["msewatch"] = m
    return doc


def verdict_to_ecs(v: dict) -> dict:
    """ECS document of a verdict dict (FlowVerdict/HostVerdict.to_dict())."""
    return host_to_ecs(v) if v.get("type") == "host" else flow_to_ecs(v)


def formatter(fmt: str):
    """verdict dict -> dict to write, for `--format` (msewatch: as is, ecs: ECS)."""
    if fmt == "ecs":
        return verdict_to_ecs
    if fmt == "msewatch":
        return lambda d: d
    raise ValueError(f"unknown format {fmt!r} (msewatch or ecs)")


FORMATS = ("msewatch", "ecs")


# ------------------------------------------------------------------------------ Suricata EVE
_EVE_TIME = ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z")


def _eve_ts(s: Any) -> float | None:
    if not isinstance(s, str):
        return None
    for f in _EVE_TIME:
        try:
            return datetime.strptime(s, f).timestamp()
        except ValueError:
            continue
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    return dt.timestamp() if dt.tzinfo else None


#: Suricata event_type -> (event.kind, event.category, event.type); app-layer records default
#: to network/protocol
_EVE_KINDS: dict[str, tuple[str, list[str], list[str]]] = {
    "alert": ("alert", ["network", "intrusion_detection"], ["info"]),
    "flow": ("event", ["network"], ["connection", "end"]),
    "netflow": ("event", ["network"], ["connection", "end"]),
    "anomaly": ("event", ["network"], ["info"]),
    "drop": ("event", ["network"], ["denied"]),
    "stats": ("metric", [], []),
}


def eve_to_ecs(raw: bytes, annotation: dict | None = None) -> dict:
    """ECS document of one Suricata EVE line. The line itself is kept in event.original; a
    line that is not a JSON object becomes an event.kind pipeline_error document (nothing is
    dropped). `annotation` is the matched verdict's `msewatch_flow` object, if any."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    try:
        ev = orjson.loads(raw)
    except orjson.JSONDecodeError:
        ev = None
    if not isinstance(ev, dict):
        doc = _base("msewatch.eve", None, "pipeline_error", [], [])
        doc["event"].update(provider="suricata", original=text)
        doc["error"] = {"message": "not a JSON object"}
        doc["tags"] = ["msewatch_unparsed"]
        _prune_empty(doc["event"])
        return doc
    etype = ev.get("event_type") if isinstance(ev.get("event_type"), str) else ""
    kind, cats, types = _EVE_KINDS.get(etype, ("event", ["network"], ["protocol"]))
    types = list(types)
    doc = _base("msewatch.eve", _eve_ts(ev.get("timestamp")), kind, list(cats), types)
    e = doc["event"]
    e.update(provider="suricata", original=text)
    if etype:
        e["action"] = etype
    _endpoints(doc, ev.get("src_ip"), ev.get("src_port"), ev.get("dest_ip"), ev.get("dest_port"))
    _transport(doc, ev.get("proto"))
    net = doc.setdefault("network", {})
    if isinstance(ev.get("community_id"), str) and ev["community_id"]:
        net["community_id"] = ev["community_id"]
    app = ev.get("app_proto")
    if isinstance(app, str) and app and app not in ("failed", "unknown"):
        net["protocol"] = app.lower()
    elif types == ["protocol"]:  # an app-layer record whose protocol we cannot name
        types[:] = ["info"]
    flow = ev.get("flow")
    if isinstance(flow, dict):
        # the flow's counters are by client (toserver) and server (toclient); source.* is the
        # flow's client in flow records and the packet's sender in alerts ("direction")
        if etype in ("flow", "netflow") or ev.get("direction") == "to_server":
            client_side: str | None = "source"
        elif ev.get("direction") == "to_client":
            client_side = "destination"
        else:
            client_side = None
        _flow_counters(doc, flow, client_side)
    alert = ev.get("alert")
    if etype == "alert" and isinstance(alert, dict):
        _rule(doc, alert)
    if not net:
        del doc["network"]
    doc["observer"] = dict(SURICATA_OBSERVER)
    if annotation:
        doc["msewatch"] = annotation
    _prune_empty(e)
    return doc


def _flow_counters(doc: dict, flow: dict, client_side: str | None) -> None:
    """Packets/bytes per side (when the orientation is known) and in total; start, end, duration."""
    server_side = {"source": "destination", "destination": "source"}.get(client_side or "")
    tot: dict[str, int] = {}
    for side, d in ((client_side, "toserver"), (server_side, "toclient")):
        for what in ("packets", "bytes"):
            n = _count(flow.get(("pkts_" if what == "packets" else "bytes_") + d))
            if n is not None:
                if side is not None:
                    doc.setdefault(side, {})[what] = n
                tot[what] = tot.get(what, 0) + n
    if tot:
        doc.setdefault("network", {}).update(tot)
    start, end = _eve_ts(flow.get("start")), _eve_ts(flow.get("end"))
    if start is not None:
        doc["event"]["start"] = iso(start)
    if end is not None:
        doc["event"]["end"] = iso(end)
    if start is not None and end is not None and end >= start:
        doc["event"]["duration"] = int(round((end - start) * 1e9))


def _rule(doc: dict, alert: dict) -> None:
    rule: dict[str, str] = {}
    sid = alert.get("signature_id")
    if isinstance(sid, int) and not isinstance(sid, bool):
        rule["id"] = str(sid)
        if RULESET_SIDS[0] <= sid <= RULESET_SIDS[1]:
            rule["ruleset"] = "msewatch"
    for k, out in (("signature", "name"), ("category", "category")):
        if isinstance(alert.get(k), str) and alert[k]:
            rule[out] = alert[k]
    rev = alert.get("rev")
    if isinstance(rev, int) and not isinstance(rev, bool):
        rule["version"] = str(rev)
    if rule:
        doc["rule"] = rule
    sev = alert.get("severity")
    if isinstance(sev, int) and not isinstance(sev, bool):
        doc["event"]["severity"] = sev
    action = alert.get("action")
    if action in ("allowed", "blocked"):
        doc["event"]["type"] = ["allowed" if action == "allowed" else "denied", "info"]


def _prune_empty(event: dict) -> None:
    for k in ("category", "type"):
        if not event.get(k):
            event.pop(k, None)


def eve_line(raw: bytes, annotation: dict | None) -> bytes:
    """One EVE line rendered as an ECS JSON line (the `annotate --format ecs` writer)."""
    return orjson.dumps(eve_to_ecs(raw, annotation)) + b"\n"


# ------------------------------------------------------------------------------ definitions
@lru_cache(maxsize=1)
def ecs_definitions() -> dict:
    """data/ecs_fields.yaml: {ecs_version, source, fields: {flat_name: definition}}."""
    import yaml

    text = resources.files("msewatch").joinpath("data/ecs_fields.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def ecs_version() -> str:
    return str(ecs_definitions()["ecs_version"])


#: msewatch.* custom fields: flat name (under msewatch.) -> Elasticsearch type
MSEWATCH_FIELDS: dict[str, str] = {
    "kind": "keyword",
    "uid": "keyword",
    "label": "keyword",
    "protocol": "keyword",
    "client_family": "keyword",
    "client": "keyword",
    "probability": "float",
    "flow_probability": "float",
    "host_score": "float",
    "decided_at": "date",
    "decided_at_packet": "long",
    "families": "keyword",
    "families_own": "keyword",
    "families_context": "keyword",
}
_ES_TYPE = {_L: "long", _F: "float", _K: "keyword"}


def _mapping(es_type: str, d: dict | None = None) -> dict:
    m: dict[str, Any] = {"type": es_type}
    if d:
        for k in ("ignore_above", "index", "doc_values"):
            if k in d:
                m[k] = d[k]
    elif es_type == "keyword":
        m["ignore_above"] = 1024
    return m


def _nest(flat: dict[str, dict]) -> dict:
    props: dict[str, Any] = {}
    for name, m in sorted(flat.items()):
        parts = name.split(".")
        cur = props
        for p in parts[:-1]:
            cur = cur.setdefault(p, {"properties": {}})["properties"]
        cur[parts[-1]] = m
    return props


def index_template() -> dict:
    """Composable index template for `logs-msewatch.*-*` data streams: the ECS fields msewatch
    writes (types from data/ecs_fields.yaml) and the msewatch.* custom fields, typed; reasons
    not declared in REASON_TYPES are mapped by their JSON type (long, float, keyword,
    boolean). ignore_malformed keeps a document whose value does not fit its field."""
    defs = ecs_definitions()
    flat = {name: _mapping(d["type"], d) for name, d in defs["fields"].items()}
    flat.update({f"msewatch.{k}": _mapping(t) for k, t in MSEWATCH_FIELDS.items()})
    flat.update({f"msewatch.reasons.{k}": _mapping(_ES_TYPE[t]) for k, t in REASON_TYPES.items()})
    dynamic = [
        {f"msewatch_reasons_{name}": {"path_match": "msewatch.reasons.*", "match_mapping_type": jtype,
                                      "mapping": _mapping(es)}}
        for name, jtype, es in (("long", "long", "long"), ("float", "double", "float"),
                                ("boolean", "boolean", "boolean"), ("keyword", "string", "keyword"))
    ]
    return {
        "index_patterns": ["logs-msewatch.*-*"],
        "data_stream": {},
        "priority": 200,
        "template": {
            "settings": {"index.mapping.ignore_malformed": True},
            "mappings": {"dynamic_templates": dynamic, "properties": _nest(flat)},
        },
        "_meta": {
            "description": "msewatch verdicts and annotated Suricata EVE events (docs/siem.md)",
            "ecs_version": defs["ecs_version"],
            "ecs_source": defs["source"],
            "generated_by": "python -m msewatch.ecs template",
        },
    }


def template_json() -> bytes:
    return orjson.dumps(index_template(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["template"]:
        print("usage: python -m msewatch.ecs template   (prints contrib/elastic/msewatch-template.json)",
              file=sys.stderr)
        raise SystemExit(2)
    sys.stdout.buffer.write(template_json())
