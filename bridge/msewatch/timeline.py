"""All captures through one engine, as a live sensor sees a network (docs/evaluation.md).

`msewatch eval` normally runs every capture in its own engine ("one world per pcap"): host
state never meets a normal flow of a P2P host there. `--one-timeline` merges the captures
into one timeline instead:

- each capture is rebased in time so that they all start together (capture i at
  t0 + i * STAGGER seconds) and overlap;
- flows of different captures that would share a 5-tuple (the corpus reuses its lab
  addresses and listening ports) are kept apart by moving the originator's endpoint of the
  later capture to a free port, consistently for the whole capture;
- `shared="client"` also rewrites the normal captures (those whose labelled flows are all
  normal) so that their clients are the P2P hosts of the BitTorrent captures (hosts that
  exchanged MSE flows there); `shared="both"` makes the servers those hosts' MSE peers too:
  A resolves names on B, reaches B through obfs4 or shadowsocks, uses TLS and SSH to B,
  while A and B seed to each other.

Verdicts are mapped back to the capture and 5-tuple they came from, so labels.csv scores
them unchanged; host verdicts are scored in the merged world (a host is a P2P host if it is
one in any capture mapped onto it).
"""

from __future__ import annotations

import heapq
import ipaddress
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

TIMELINE = "one-timeline"  # the pcap name host verdicts of the merged world carry
STAGGER = 0.05  # seconds between capture starts
SHARED_MODES = ("client", "both")
_FIRST_FREE_PORT = 20000


def _b(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


def _s(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


@dataclass
class CapturePlan:
    """How one capture enters the timeline."""

    name: str
    offset: float = 0.0  # added to every timestamp
    addresses: dict[bytes, bytes] = field(default_factory=dict)  # original -> timeline
    ports: dict[tuple[bytes, int], int] = field(default_factory=dict)  # (timeline addr, port) -> port

    def endpoint(self, addr: bytes, port: int) -> tuple[bytes, int]:
        a = self.addresses.get(addr, addr)
        return a, self.ports.get((a, port), port)


def shared_host_maps(labels, roles, mode: str) -> dict[str, dict[str, str]]:
    """pcap -> {original address -> P2P host address} for the normal captures.

    The P2P hosts are the hosts of bt_mse label rows, most MSE peers first; a normal
    capture's clients are the addresses that originate labelled flows and never answer one,
    its servers the rest. Each capture maps to hosts it does not otherwise use."""
    if mode not in SHARED_MODES:
        raise ValueError(f"shared-host mode must be one of {SHARED_MODES}, got {mode!r}")
    rows = defaultdict(list)
    for r in labels:
        rows[r.pcap].append(r)
    peers: dict[str, set[str]] = defaultdict(set)
    for r in labels:
        if r.label == "p2p" and r.protocol == "bt_mse":
            peers[r.orig_h].add(r.resp_h)
            peers[r.resp_h].add(r.orig_h)
    p2p_hosts = sorted(peers, key=lambda h: (-len(peers[h]), ipaddress.ip_address(h)))
    if not p2p_hosts:
        return {}
    normal = sorted(p for p, rs in rows.items() if rs and all(r.label == "normal" for r in rs))
    maps: dict[str, dict[str, str]] = {}
    for j, pcap in enumerate(normal):
        rs = rows[pcap]
        origs = {r.orig_h for r in rs}
        resps = {r.resp_h for r in rs}
        clients = sorted(origs - resps, key=ipaddress.ip_address)
        servers = sorted((origs | resps) - set(clients), key=ipaddress.ip_address)
        mapped = clients + (servers if mode == "both" else [])
        keep = (origs | resps) - set(mapped)  # addresses of the capture left as they are
        used: set[str] = set(keep)
        m: dict[str, str] = {}

        def take(candidates: Iterable[str]) -> str | None:
            for h in candidates:
                if h not in used:
                    used.add(h)
                    return h
            return None

        rotated = p2p_hosts[j % len(p2p_hosts):] + p2p_hosts[:j % len(p2p_hosts)]
        first = None
        for c in clients:
            h = take(rotated)
            if h is None:
                break
            m[c] = h
            first = first or h
        if mode == "both":
            mse_peers = sorted(peers.get(first or "", ()), key=lambda h: (-len(peers[h]), ipaddress.ip_address(h)))
            for s in servers:
                h = take(mse_peers + rotated)
                if h is None:
                    break
                m[s] = h
        maps[pcap] = m
    return maps


def plan_timeline(
    packets: Sequence[list[tuple]], names: Sequence[str], address_maps: dict[str, dict[str, str]] | None = None
) -> list[CapturePlan]:
    """Offsets, address maps and the port moves that keep every flow's 5-tuple unique."""
    plans = []
    starts = [p[0][0] for p in packets if p]
    t0 = min(starts) if starts else 0.0
    claimed: set[tuple] = set()  # direction-independent flow keys already in the timeline
    used_ports: dict[bytes, set[int]] = defaultdict(set)  # timeline address -> ports in use
    for i, (pkts, name) in enumerate(zip(packets, names)):
        plan = CapturePlan(name)
        if pkts:
            plan.offset = t0 + i * STAGGER - pkts[0][0]
        plan.addresses = {_b(a): _b(b) for a, b in (address_maps or {}).get(name, {}).items()}
        # the capture's flows in timeline addresses, and the originator of each (the engine's rule)
        flows: dict[tuple, tuple[bytes, int]] = {}
        for ts, proto, src, sport, dst, dport, flags, *_ in pkts:
            a = (plan.addresses.get(src, src), sport)
            b = (plan.addresses.get(dst, dst), dport)
            key = (proto,) + ((a, b) if a <= b else (b, a))
            if key not in flows:
                flows[key] = b if proto == 6 and flags & 0x12 == 0x12 else a
        here: dict[bytes, set[int]] = defaultdict(set)
        for _, (ha, pa), (hb, pb) in flows:
            here[ha].add(pa)
            here[hb].add(pb)

        def moved(key: tuple) -> tuple:
            ends = sorted((h, plan.ports.get((h, p), p)) for h, p in key[1:])
            return (key[0],) + tuple(ends)

        for key, orig in flows.items():
            if moved(key) not in claimed:
                continue
            # move the originator's endpoint to a port its address uses nowhere, for the
            # whole capture, so the capture stays consistent (peer cache, host windows)
            port = _FIRST_FREE_PORT
            while port in used_ports[orig[0]] or port in here[orig[0]]:
                port += 1
            plan.ports[orig] = port
            here[orig[0]].add(port)
        for key in flows:
            k = moved(key)
            claimed.add(k)
            for h, p in k[1:]:
                used_ports[h].add(p)
        plans.append(plan)
    return plans


@dataclass
class TimelineResult:
    flows: list  # FlowPrediction, in the original capture's terms
    hosts: list  # HostPrediction, pcap = TIMELINE, timeline addresses
    roles: list  # HostRow, pcap = TIMELINE: the hosts.csv roles merged in the timeline
    plans: list[CapturePlan]


def run_timeline(pcaps: Sequence[str | Path], labels, roles, cfg=None, shared: str | None = None) -> TimelineResult:
    """Merge the captures into one engine (see the module docstring) and predict."""
    from .engine import Engine
    from .evaluate import FlowPrediction, HostPrediction, HostRow
    from .sources.pcap import ReadStats, iter_packets
    from .verdict import FlowVerdict

    names = [Path(p).name for p in pcaps]
    packets = [list(iter_packets(str(p), ReadStats())) for p in pcaps]
    mine = set(names)
    maps = shared_host_maps([r for r in labels if r.pcap in mine], roles, shared) if shared else {}
    plans = plan_timeline(packets, names, maps)

    # direction-independent timeline key -> (capture index); per capture the way back
    owner: dict[tuple, int] = {}
    back: list[dict[tuple[bytes, int], tuple[bytes, int]]] = []
    streams = []
    for i, (pkts, plan) in enumerate(zip(packets, plans)):
        inv: dict[tuple[bytes, int], tuple[bytes, int]] = {}
        out = []
        off = plan.offset
        for ts, proto, src, sport, dst, dport, flags, payload, length in pkts:
            s, sp = plan.endpoint(src, sport)
            d, dp = plan.endpoint(dst, dport)
            inv[(s, sp)] = (src, sport)
            inv[(d, dp)] = (dst, dport)
            a, b = (s, sp), (d, dp)
            owner[(proto,) + ((a, b) if a <= b else (b, a))] = i
            out.append((ts + off, i, len(out), proto, s, sp, d, dp, flags, payload, length))
        back.append(inv)
        streams.append(out)

    eng = Engine(cfg)
    flows: list = []
    hosts: dict[str, HostPrediction] = {}

    def collect(verdicts) -> None:
        for v in verdicts:
            if isinstance(v, FlowVerdict):
                k = v.key
                a, b = (_b(k.orig_h), k.orig_p), (_b(k.resp_h), k.resp_p)
                proto_num = 6 if k.proto == "tcp" else 17
                i = owner.get((proto_num,) + ((a, b) if a <= b else (b, a)))
                if i is None:
                    continue  # cannot happen: every packet came from a capture
                (oh, op), (rh, rp) = back[i][a], back[i][b]
                orig = FlowPrediction.from_verdict(names[i], v)
                flows.append(FlowPrediction(
                    names[i], k.proto, _s(oh), op, _s(rh), rp, orig.label, orig.protocol,
                    orig.decided_at_packet, orig.decision_seconds, orig.reasons, orig.families_own,
                    orig.families_context,
                ))
            else:
                prev = hosts.get(v.host)
                ever = v.label == "p2p_host" or (prev is not None and prev.ever_p2p_host)
                hosts[v.host] = HostPrediction(TIMELINE, v.host, v.label, ever, tuple(v.reasons))

    proc = eng.process_packet
    for rec in heapq.merge(*streams):
        proc(rec[0], *rec[3:])
        if eng.pending:
            collect(eng.drain())
    collect(eng.flush())

    merged: dict[str, str] = {}
    for r in roles:
        i = names.index(r.pcap) if r.pcap in names else None
        if i is None:
            continue
        h = _s(plans[i].addresses.get(_b(r.host), _b(r.host)))
        if merged.get(h) != "p2p_host":
            merged[h] = r.role
    merged_roles = [HostRow(TIMELINE, h, role) for h, role in sorted(merged.items())]
    return TimelineResult(flows, list(hosts.values()), merged_roles, plans)
