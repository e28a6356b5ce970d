"""The engine's host state across bridge restarts: export, import, and the state file.

What later verdicts depend on besides the evidence itself: the host model (per host: windowed
distinct counts, decayed counters, the last discovery / encrypted / P2P times, the label of
its hysteresis and the label last reported), the endpoint peer cache (in LRU order, with the
time each endpoint was last confirmed) and the engine's clock (`now`, which the peer cache's
TTL is measured against). Flows being recorded (the packet path) are not part of it: the
bridge takes evidence ready-made from Zeek, which keeps and re-sends what was not answered.

Format (version 1): JSON, `{"format": "msewatch-engine-state", "version": 1, "model": ...}`.
The hosts are the model's own: "compiled" (msewatch/_decide.c HostModel: one blob per host,
native byte order, recorded in `byteorder`) or "python" (score/host.py: the HyperLogLog
sketches in Apache DataSketches' updatable serialization). A file of the other model, of
another byte order, or of other window settings (`host.windows`, `buckets_per_window`,
`hll_lg_k`) is refused with a StateError that says so: the bridge then starts empty. They
are not converted because the two models keep their sketches differently (both give the
library's estimates, but the compiled model's buckets are not the library's objects).

Nothing here runs per message: `snapshot()` copies the state out between two messages (in
the event loop), `encode()` and `write_atomic()` may then run in a thread.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from .atomic import write_atomic

FORMAT = "msewatch-engine-state"
VERSION = 1

log = logging.getLogger("msewatch.state")


class StateError(Exception):
    """The state cannot be used; the message says why in one line."""


def model_kind(engine: Any) -> str:
    return "compiled" if type(engine.hosts).__module__ == "msewatch._decide" else "python"


def _window_cfg(cfg: Any) -> dict:
    h = cfg.host
    return {"windows": [float(w) for w in h.windows], "buckets_per_window": int(h.buckets_per_window),
            "hll_lg_k": int(h.hll_lg_k)}


def _b64(b: Any) -> str:
    if not isinstance(b, bytes):
        raise TypeError(f"{type(b).__name__} in the state")
    return base64.b64encode(b).decode("ascii")


def snapshot(engine: Any) -> dict:
    """The engine's host state as plain data (a copy: the engine may go on afterwards)."""
    kind = model_kind(engine)
    if kind == "compiled":
        hosts = engine.hosts.export_hosts()  # (host, first_ts, last_ts, label, reported, blob) tuples
    else:
        hosts = [_py_host(st) for st in engine.hosts.hosts.values()]
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": kind,
        "byteorder": sys.byteorder,
        "host_config": _window_cfg(engine.cfg),
        "now": engine.now,
        "peer_cache": [[h, p, ts] for (h, p), ts in engine._peer_cache.items()],
        "hosts": hosts,
    }


def encode(snap: dict) -> bytes:
    """The snapshot as the file's bytes (blobs and sketches in base64)."""
    # json (not orjson): the last_* times start at -inf, which JSON's extension keeps
    return json.dumps(snap, separators=(",", ":"), default=_b64).encode()


def export_state(engine: Any) -> bytes:
    return encode(snapshot(engine))


def _py_host(st: Any) -> list:
    def windows(w: Any) -> list:
        return [[b, sk.serialize_updatable()] for b, sk in w.buckets.items()]

    dec = [[d.value, d.ts] for d in (st.p2p_flows, st.enc_flows, st.discovery, st.near, st.normal_flows)]
    return [st.host, st.first_ts, st.last_ts, st.label, st.reported, st.flows, dec,
            [st.last_discovery, st.last_encrypted, st.last_p2p], [windows(w) for w in (*st.ips, st.ports)]]


def _num(x: Any, what: str) -> float | int:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or (isinstance(x, float) and math.isnan(x)):
        raise StateError(f"{what}: not a number")
    return x


def import_state(engine: Any, data: bytes) -> int:
    """Replace the engine's host state with `data` (what export_state wrote); returns the
    number of hosts restored. StateError (one line) when the data cannot be used: the engine
    is then unchanged."""
    try:
        snap = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise StateError(f"not JSON ({str(e)[:80]})") from None
    if not isinstance(snap, dict) or snap.get("format") != FORMAT:
        raise StateError("not an msewatch engine state")
    if snap.get("version") != VERSION:
        raise StateError(f"format version {str(snap.get('version'))[:20]}, this msewatch reads {VERSION}")
    kind = model_kind(engine)
    if snap.get("model") != kind:
        raise StateError(f"written by the {str(snap.get('model'))[:20]} host model, this engine runs the {kind} one "
                         "(the two keep their sketches differently)")
    if kind == "compiled" and snap.get("byteorder") != sys.byteorder:
        raise StateError(f"written on a {str(snap.get('byteorder'))[:10]}-endian machine")
    if snap.get("host_config") != _window_cfg(engine.cfg):
        raise StateError("written with other host.windows / buckets_per_window / hll_lg_k")
    try:
        now = _num(snap["now"], "now")
        peers = []
        for item in snap["peer_cache"]:
            h, p, ts = item
            if not isinstance(h, str) or isinstance(p, bool) or not isinstance(p, int):
                raise StateError("peer_cache: an entry is not [address, port, time]")
            peers.append(((h, p), _num(ts, "peer_cache time")))
        hosts = snap["hosts"]
        if not isinstance(hosts, list):
            raise StateError("hosts: not a list")
        cfg = engine.cfg
        if len(hosts) > cfg.host.max_hosts:  # a smaller max_hosts now: keep the most recently seen
            keep = set(sorted(range(len(hosts)), key=lambda i: hosts[i][2])[-cfg.host.max_hosts:])
            hosts = [h for i, h in enumerate(hosts) if i in keep]
        size = cfg.flow_table.peer_cache_size
        peers = peers[len(peers) - size:] if size else []
        if kind == "compiled":
            items = [(h, f, l, lab, rep, base64.b64decode(blob, validate=True)) for h, f, l, lab, rep, blob in hosts]
            new_hosts = None
        else:
            new_hosts = _py_hosts(engine, hosts)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise StateError(f"malformed ({type(e).__name__}: {str(e)[:80]})") from None
    # everything parsed: replace in place (the compiled decider holds these very objects)
    if new_hosts is None:
        try:
            engine.hosts.import_hosts(items)
        except (ValueError, TypeError) as e:
            raise StateError(str(e)[:120]) from None
    else:
        engine.hosts.hosts.clear()
        engine.hosts.hosts.update(new_hosts)
    engine._peer_cache.clear()
    engine._peer_cache.update(peers)
    engine.now = now
    return len(hosts)


def _py_hosts(engine: Any, hosts: list) -> dict:
    from .score import host as hostmod
    from .verdict import NORMAL_HOST, P2P_HOST, UNKNOWN

    hostmod._load_datasketches()  # binds hostmod.hll_sketch and hostmod._HLL_4 (None before)

    labels = {P2P_HOST: P2P_HOST, NORMAL_HOST: NORMAL_HOST, UNKNOWN: UNKNOWN}
    hcfg = engine.cfg.host
    out = {}
    for item in hosts:
        host, first_ts, last_ts, label, reported, flows, dec, last3, windows = item
        if not isinstance(host, str) or label not in labels or reported not in labels:
            raise StateError("hosts: an entry's address or label is not one msewatch writes")
        if isinstance(flows, bool) or not isinstance(flows, int) or flows < 0 or len(dec) != 5 or len(last3) != 3 \
                or len(windows) != 4:
            raise StateError("hosts: an entry is malformed")
        st = hostmod.HostState(host, _num(first_ts, "first_ts"), hcfg)
        st.last_ts = _num(last_ts, "last_ts")
        st.label, st.reported, st.flows = labels[label], labels[reported], flows
        for d, (value, ts) in zip((st.p2p_flows, st.enc_flows, st.discovery, st.near, st.normal_flows), dec):
            d.value, d.ts = float(_num(value, "counter")), float(_num(ts, "counter time"))
        st.last_discovery, st.last_encrypted, st.last_p2p = (float(_num(x, "time")) for x in last3)
        for w, buckets in zip((*st.ips, st.ports), windows):
            for b, blob in buckets:
                if isinstance(b, bool) or not isinstance(b, int):
                    raise StateError("hosts: a bucket number is not an integer")
                try:
                    sk = hostmod.hll_sketch.deserialize(base64.b64decode(blob, validate=True))
                except Exception as e:  # the library's own errors (RuntimeError, ValueError, ...)
                    raise StateError(f"hosts: a sketch does not parse ({type(e).__name__})") from None
                if sk.lg_config_k != w.lg_k or sk.tgt_type != hostmod._HLL_4:
                    raise StateError("hosts: a sketch of another size or type")
                w.buckets[b] = sk
        out[host] = st
    return out


# ---------------------------------------------------------------- the state file


class StateFile:
    """The bridge's state file (`state.path`): restored at start, saved every `state.interval`
    seconds and at stop. Never raises: a failure is one log line and a metric."""

    def __init__(self, engine: Any, path: str | Path, metrics: Any) -> None:
        self.engine = engine
        self.path = Path(path)
        self.metrics = metrics

    def restore(self) -> bool:
        """Load the file into the engine. Missing: start empty, silently. Unreadable or
        unusable: one warning naming the file, start empty, `state_load_errors_total` + 1."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            log.info("state file %s does not exist yet: starting with empty host state", self.path)
            return False
        except OSError as e:
            return self._load_failed(f"cannot read: {e.strerror or e}")
        try:
            n = import_state(self.engine, data)
        except StateError as e:
            return self._load_failed(str(e))
        except Exception as e:  # never a traceback at start
            return self._load_failed(f"{type(e).__name__}: {str(e)[:80]}")
        log.info("host state restored from %s: %d host(s), %d peer endpoint(s)", self.path, n,
                 len(self.engine._peer_cache))
        return True

    def _load_failed(self, why: str) -> bool:
        self.metrics.state_load_errors_total += 1
        log.warning("state file %s: %s; starting with empty host state", self.path, why)
        return False

    def save_sync(self) -> bool:
        try:
            write_atomic(self.path, export_state(self.engine))
        except Exception as e:
            return self._save_failed(e)
        self.metrics.state_saves_total += 1
        return True

    async def save(self) -> bool:
        """Copy the state out now (between two messages), encode and write it in a thread."""
        import asyncio

        try:
            snap = snapshot(self.engine)
        except Exception as e:
            return self._save_failed(e)

        def write() -> None:
            write_atomic(self.path, encode(snap))

        try:
            await asyncio.to_thread(write)
        except Exception as e:
            return self._save_failed(e)
        self.metrics.state_saves_total += 1
        return True

    def _save_failed(self, e: Exception) -> bool:
        self.metrics.state_save_errors_total += 1
        why = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {str(e)[:80]}"
        log.error("state file %s: cannot save: %s", self.path, why)
        return False
