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
from ..evidence import FAMILY_HOST, FAMILY_NEGATIVE, FAMILY_PLAINTEXT, FlowEvidence, Observation
from ..verdict import NORMAL, P2P, UNKNOWN


def sigmoid(s: float) -> float:
    if s >= 0:
        return 1.0 / (1.0 + math.exp(-s))
    e = math.exp(s)
    return e / (1.0 + e)


def logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


@dataclass(frozen=True, slots=True)
class FlowScore:
    score: float  # S_flow (log-odds)
    protocol: str | None  # protocol of the strongest positive contribution
    families: tuple[str, ...]  # families with a positive contribution
    reasons: tuple[str, ...]
    plaintext: bool  # a literal protocol signature contributed


def score_observations(obs: Sequence[Observation], sc: ScoringConfig) -> FlowScore:
    s = sc.bias
    best: tuple[float, str | None] = (0.0, None)
    families: list[str] = []
    reasons: list[str] = []
    plaintext = False
    for o in obs:
        contrib = sc.weight(o.feature) * o.value
        if contrib == 0.0:
            continue
        s += contrib
        reasons.append(f"{o.feature}={o.value:.2f}")
        reasons.extend(o.reasons)
        if contrib > 0:
            if o.family not in families:
                families.append(o.family)
            if o.family == FAMILY_PLAINTEXT:
                plaintext = True
            if o.protocol is not None and contrib > best[0]:
                best = (contrib, o.protocol)
    return FlowScore(s, best[1], tuple(families), tuple(reasons), plaintext)


@dataclass(frozen=True, slots=True)
class Decision:
    label: str
    score: FlowScore
    s_combined: float
    probability: float
    packet: int  # payload packets in the prefix that decided (0 = none)
    ts: float
    path: tuple[tuple[int, float], ...] = ()  # (payload packets, P) at each prefix scored


def label_for(
    fs: FlowScore, s_host: float, host_family: bool, n_packets: int, old_enough: bool, sc: ScoringConfig
) -> tuple[str, float, float]:
    """Label one prefix. Returns (label, combined S, P).

    p2p_likely needs P >= t_high and, unless a literal protocol signature is present,
    at least two payload packets and `min_families_encrypted` independent families
    (the host's context counts as one when it is P2P-like).
    """
    # A host without P2P evidence neither helps nor hurts a flow: only its positive
    # score enters, so a host's first P2P flow is judged on its own evidence.
    s = sc.alpha * fs.score + (1.0 - sc.alpha) * max(s_host, 0.0)
    p = sigmoid(s)
    if p >= sc.t_high:
        if fs.plaintext:
            return P2P, s, p
        fams = set(fs.families) - {FAMILY_NEGATIVE}
        if host_family:
            fams.add(FAMILY_HOST)
        if n_packets >= 2 and len(fams) >= sc.min_families_encrypted:
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
    its complete evidence.
    """
    sizes = ev.sizes
    if not sizes:
        fs = score_observations(observe(ev), sc)
        label, s, p = label_for(fs, s_host, host_family, 0, ev.complete, sc)
        if label == P2P and not fs.plaintext:
            label = UNKNOWN
        return Decision(label, fs, s, p, 0, ev.ts + ev.duration, ((0, p),))
    last: Decision | None = None
    path: list[tuple[int, float]] = []
    for n in decision_points(sizes):
        pre = ev.prefix(n)
        fs = score_observations(observe(pre), sc)
        whole = n == len(sizes)
        old_enough = n >= sc.min_packets_normal or (whole and ev.complete)
        label, s, p = label_for(fs, s_host, host_family, n, old_enough, sc)
        path.append((n, p))
        last = Decision(label, fs, s, p, n, ev.ts + ev.times[n - 1], tuple(path))
        if label != UNKNOWN:
            return last
    assert last is not None
    return last
