"""Flow model: logistic score over detector observations, and the labelling rule.

S = bias + sum(w_i * f_i), P = 1 / (1 + e^-S). Labels are decided with hysteresis by
`decide`, which walks the prefixes of a flow's evidence (the burst boundaries) and stops
at the first one that is conclusive, so a verdict names the packet it was reached at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from ..config import ScoringConfig
from ..evidence import CONTEXT_FAMILIES, FAMILY_NEGATIVE, FAMILY_PLAINTEXT, FAMILY_SHAPE, FlowEvidence, Observation
from ..verdict import NORMAL, P2P, UNKNOWN


def sigmoid(s: float) -> float:
    if s >= 0:
        return 1.0 / (1.0 + math.exp(-s))
    e = math.exp(s)
    return e / (1.0 + e)


def logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


# Features whose presence makes an encrypted flow's own evidence specific to BitTorrent:
# the MSE exchange with the BitTorrent handshake's length showing through RC4. Randomness
# and the bare 96-608 byte opening are shared with fully-encrypted proxies (shadowsocks,
# obfs4), so without an anchor only the peer cache may lift them (see label_for).
ANCHOR_FEATURES = frozenset({"mse_handshake"})
PEER_FEATURE = "peer_cache"


@dataclass(frozen=True, slots=True)
class FlowScore:
    score: float  # S_flow (log-odds), own evidence and context
    protocol: str | None  # protocol of the strongest positive contribution
    families: tuple[str, ...]  # families with a positive contribution (own, then context)
    reasons: tuple[str, ...]
    plaintext: bool  # a literal P2P protocol signature contributed
    families_own: tuple[str, ...] = ()  # positive families of the flow's own evidence
    families_context: tuple[str, ...] = ()  # positive context families (peer cache, host)
    other_protocol: str | None = None  # a non-P2P protocol the flow's own evidence shows
    anchor: bool = False  # an anchor feature (ANCHOR_FEATURES) contributed
    peer: bool = False  # the peer cache contributed


def score_observations(obs: Sequence[Observation], sc: ScoringConfig) -> FlowScore:
    s = sc.bias
    best: tuple[float, str | None] = (0.0, None)
    own: list[str] = []
    ctx: list[str] = []
    reasons: list[str] = []
    plaintext = anchor = peer = False
    other: str | None = None
    for o in obs:
        contrib = sc.weight(o.feature) * o.value
        if contrib == 0.0:
            continue
        s += contrib
        reasons.append(f"{o.feature}={o.value:.2f}")
        reasons.extend(o.reasons)
        if contrib > 0:
            fams = ctx if o.family in CONTEXT_FAMILIES else own
            if o.family not in fams:
                fams.append(o.family)
            if o.family == FAMILY_PLAINTEXT:
                plaintext = True
            if o.feature in ANCHOR_FEATURES:
                anchor = True
            if o.feature == PEER_FEATURE:
                peer = True
            if o.protocol is not None and contrib > best[0]:
                best = (contrib, o.protocol)
        elif o.family == FAMILY_NEGATIVE and other is None and o.protocol is not None:
            other = o.protocol
    return FlowScore(s, best[1], tuple(own + ctx), tuple(reasons), plaintext, tuple(own), tuple(ctx), other,
                     anchor, peer)


@dataclass(frozen=True, slots=True)
class Decision:
    label: str
    score: FlowScore
    s_combined: float
    probability: float
    packet: int  # payload packets in the prefix that decided (0 = none)
    ts: float
    path: tuple[tuple[int, float], ...] = ()  # (payload packets, P) at each prefix scored
    host_family: bool = False  # the host's score counted as context


def label_for(
    fs: FlowScore, s_host: float, host_family: bool, n_packets: int, old_enough: bool, sc: ScoringConfig
) -> tuple[str, float, float]:
    """Label one prefix. Returns (label, combined S, P). Context lifts, it never creates:

    1. a non-P2P protocol the flow's own evidence recognises (TLS, SSH, HTTP, DNS, QUIC,
       STUN) makes the flow normal_likely, whatever the context says, unless a literal
       P2P signature is there too (a tracker's HTTP answer);
    2. a literal P2P signature of the flow's own (BT handshake, KRPC, BEP 15, tracker GET,
       LSD, uTP structure) is p2p_likely at P >= t_high; context may lift a weak one;
    3. an encrypted flow is p2p_likely at P >= t_high only with at least two payload
       packets, `min_families_encrypted` families of its own evidence (the MSE shape,
       randomness; context families never count), and either an anchor of its own (the MSE
       exchange with the BT handshake length, ANCHOR_FEATURES) or a peer-cache hit: the
       remote endpoint (address and listening port) spoke BitTorrent on its own evidence
       recently. Host context alone never lifts an unanchored encrypted flow: a P2P host's
       proxy flows (shadowsocks, obfs4) look the same from their own evidence;
    4. normal_likely at P <= t_low once old enough; otherwise unknown.
    """
    # A host without P2P evidence neither helps nor hurts a flow: only its positive
    # score enters, so a host's first P2P flow is judged on its own evidence.
    s = sc.alpha * fs.score + (1.0 - sc.alpha) * max(s_host, 0.0)
    p = sigmoid(s)
    if fs.other_protocol is not None and not fs.plaintext:
        return NORMAL, s, p
    if p >= sc.t_high:
        if fs.plaintext:
            return P2P, s, p
        own = set(fs.families_own) - {FAMILY_NEGATIVE}
        if n_packets >= 2 and len(own) >= sc.min_families_encrypted and (fs.anchor or fs.peer):
            return P2P, s, p
        return UNKNOWN, s, p
    if p <= sc.t_low and old_enough:
        return NORMAL, s, p
    return UNKNOWN, s, p


def decision_points(sizes: Sequence[int]) -> list[int]:
    """Prefix lengths worth scoring: the end of every burst, and the whole."""
    pts = [i + 1 for i in range(len(sizes) - 1) if (sizes[i] > 0) != (sizes[i + 1] > 0)]
    n = len(sizes)
    if not pts or pts[-1] != n:
        pts.append(n)
    return pts


def decide(
    ev: FlowEvidence,
    observe: Callable[[FlowEvidence], list[Observation]],
    s_host: float,
    host_family: bool,
    sc: ScoringConfig,
) -> Decision:
    """Walk the prefixes in time order; the first conclusive label is final.

    A label reached on a prefix is never revised by later packets (hysteresis): a single
    odd packet after the decision cannot flip it. An inconclusive flow is labelled on
    its complete evidence. The prefixes are the burst ends, so the walk scores at most
    max_bursts + 1 of them whatever the evidence holds (the engine cuts evidence to the
    budget before it gets here): deciding is linear in the budget.
    """
    sizes = ev.sizes
    if not sizes:
        fs = score_observations(observe(ev), sc)
        label, s, p = label_for(fs, s_host, host_family, 0, ev.complete, sc)
        if label == P2P and not fs.plaintext:
            label = UNKNOWN
        return Decision(label, fs, s, p, 0, ev.ts + ev.duration, ((0, p),), host_family)
    last: Decision | None = None
    path: list[tuple[int, float]] = []
    for n in decision_points(sizes):
        pre = ev.prefix(n)
        fs = score_observations(observe(pre), sc)
        whole = n == len(sizes)
        old_enough = n >= sc.min_packets_normal or (whole and ev.complete)
        if not whole and FAMILY_SHAPE in fs.families_own:
            old_enough = False  # an opening still shaped like MSE is not normal before its end
        label, s, p = label_for(fs, s_host, host_family, n, old_enough, sc)
        path.append((n, p))
        last = Decision(label, fs, s, p, n, ev.ts + ev.times[n - 1], tuple(path), host_family)
        if label != UNKNOWN:
            return last
    assert last is not None
    return last


# The result of deciding one flow, flat, as both deciders return it (decide_flow here, the
# compiled one in msewatch/_decide.c): what the engine needs for the verdict, the peer cache
# and the host model, without the intermediate objects.
#   (label, s_flow, probability, decided_at_packet, decided_at, score_path, reasons,
#    families_own, families_context, protocol, other_protocol, confirmed, detector_runs)
# s_flow is the flow's own score (S_flow with context), probability the combined P;
# protocol is the P2P protocol of the strongest positive contribution (or None),
# other_protocol the non-P2P protocol the own evidence shows (or None); confirmed says
# the flow is P2P on its own complete evidence (only such flows feed the peer cache).
FlowDecision = tuple


def decide_flow(
    ev: FlowEvidence,
    params,
    sc: ScoringConfig,
    s_host: float,
    host_family: bool,
    peer_hit: bool,
    near: str | None,
) -> FlowDecision:
    """Decide one flow (already cut to the budget): the reference decider.

    Context observations follow the flow's own: `peer_cache` when the remote endpoint is a
    recently confirmed peer (peer_hit), `host_context` when the host had P2P activity near
    the flow's start (near: what it was). Head-only detectors give the same answer for
    every prefix holding the same directions, so they run once per such state; the shape
    detector runs on every prefix scored."""
    from ..detect import run_detectors
    from ..evidence import FAMILY_HOST, FAMILY_PEER

    context: list[Observation] = []
    if peer_hit:
        context.append(Observation("peer_cache", FAMILY_PEER, 1.0, None, ("peer_cache=endpoint",)))
    if near:
        context.append(Observation("host_context", FAMILY_HOST, 1.0, None, (f"host_p2p_near={near}",)))
    by_heads: dict[tuple[bool, bool], list[Observation]] = {}
    runs = 0

    def own(pre: FlowEvidence) -> list[Observation]:
        nonlocal runs
        runs += 1
        state = (bool(pre.orig_heads), bool(pre.resp_heads))
        heads = by_heads.get(state)
        if heads is None:
            heads = by_heads[state] = run_detectors(pre, params, shape=False)
        return heads + run_detectors(pre, params, shape=True)

    d = decide(ev, lambda pre: own(pre) + context, s_host, host_family, sc)
    fs = d.score
    confirmed = False
    if d.label == P2P:
        # P2P on its own complete evidence, without the context (peer cache, host)? Only
        # such flows feed the context of later flows: a label that context lifted must not
        # produce more context, or one false positive would spread along a host's flows.
        if fs.plaintext and fs.other_protocol is None:
            confirmed = True
        else:
            own_fs = score_observations(own(ev), sc)
            confirmed = label_for(own_fs, 0.0, False, len(ev.sizes), ev.complete, sc)[0] == P2P
    return (d.label, fs.score, d.probability, d.packet, d.ts, d.path, fs.reasons, fs.families_own,
            fs.families_context, fs.protocol, fs.other_protocol, confirmed, runs)

