#!/usr/bin/env python3
"""The four knots of the coupon-mode estimate in msewatch/_decide.c (COUPON_Y), derived and checked.

In its list and set modes a DataSketches HLL sketch holds "coupons": a 26-bit address and a
6-bit value (leading zeros of the second hash word + 1, capped at 63) of each item. Two items
collide only when both parts agree, so the sketch estimates the number of items n from its
number of distinct coupons x by inverting the expected count

    E[x](n) = sum over values v of 2^26 * (1 - (1 - p_v / 2^26)^n),  p_v = 2^-v (v < 63), p_63 = 2^-62

at the knots x = 20, 400, 8000, 160000 (and 0 -> 0, 1 -> 1), then interpolating cubically
between them. This tool solves E[x](n) = x with 60 significant digits (decimal, Newton's
method), rounds to doubles, and then checks the knots against the library itself: the
compiled model's interpolation with these knots must give the library's estimate for every
coupon count a configuration can hold in coupon mode (0..6144, lg_k 16). The library computed
its knots in double precision, so a knot can differ from the exact root in its last bits; the
tool takes, within 8 units in the last place of each root, the knots that reproduce the
library for every count, and fails if none or several do.

    .venv/bin/python tools/hll_constants.py          # print the knots as C hex-float literals
    .venv/bin/python tools/hll_constants.py --check  # and compare them with bridge/msewatch/_decide.c
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
from decimal import Decimal, getcontext
from pathlib import Path

getcontext().prec = 60
A = Decimal(2) ** 26
P = [Decimal(2) ** -(v + 1) for v in range(62)] + [Decimal(2) ** -62]  # values 1..62, then 63
X = [0.0, 1.0, 20.0, 400.0, 8000.0, 160000.0]
MAX_COUPONS = 3 * (1 << (16 - 3)) // 4  # a coupon set at lg_k 16 promotes beyond this


def expected_coupons(n: Decimal) -> tuple[Decimal, Decimal]:
    """E[x](n) and its derivative."""
    e = d = Decimal(0)
    for p in P:
        q = (1 - p / A).ln()
        t = (n * q).exp()
        e += A * (1 - t)
        d -= A * q * t
    return e, d


def exact_knot(x: float) -> Decimal:
    n = Decimal(x)
    for _ in range(50):
        e, d = expected_coupons(n)
        step = (e - Decimal(x)) / d
        n -= step
        if abs(step) < Decimal(10) ** -40:
            break
    return n


def cubic(x0, y0, x1, y1, x2, y2, x3, y3, x):
    l0n = (x - x1) * (x - x2) * (x - x3); l1n = (x - x0) * (x - x2) * (x - x3)
    l2n = (x - x0) * (x - x1) * (x - x3); l3n = (x - x0) * (x - x1) * (x - x2)
    l0d = (x0 - x1) * (x0 - x2) * (x0 - x3); l1d = (x1 - x0) * (x1 - x2) * (x1 - x3)
    l2d = (x2 - x0) * (x2 - x1) * (x2 - x3); l3d = (x3 - x0) * (x3 - x1) * (x3 - x2)
    return y0 * l0n / l0d + y1 * l1n / l1d + y2 * l2n / l2d + y3 * l3n / l3d


def estimate(y: list[float], count: int) -> float:
    """_decide.c coupon_estimate with the knots y."""
    x = float(count)
    o = 0 if x < 20 else (1 if x < 400 else 2)
    return max(cubic(X[o], y[o], X[o + 1], y[o + 1], X[o + 2], y[o + 2], X[o + 3], y[o + 3], x), x)


def library_estimates() -> list[float]:
    """The library's coupon-mode estimate after each of MAX_COUPONS distinct coupons."""
    from datasketches import hll_sketch, tgt_hll_type

    sk = hll_sketch(16, tgt_hll_type.HLL_8)
    out = [sk.get_estimate()]
    i = 0
    while len(out) <= MAX_COUPONS:
        before = sk.serialize_compact()
        sk.update(f"knot-{i}")
        i += 1
        if sk.serialize_compact() != before:  # a new coupon (not a collision)
            out.append(sk.get_estimate())
    assert sk.serialize_updatable()[0] == 3, "the sketch left coupon mode"
    return out


def ulp_step(v: float, k: int) -> float:
    return struct.unpack("<d", struct.pack("<q", struct.unpack("<q", struct.pack("<d", v))[0] + k))[0]


def calibrate(roots: list[float], lib: list[float]) -> list[float]:
    """The knots within 8 ulps of the roots that give the library's estimate for every count
    (knots 2..5 are searched in turn: counts < 20 use 0..3, < 400 use 1..4, the rest 2..5)."""
    spans = [(2, range(0, 20)), (3, range(0, 20)), (4, range(20, 400)), (5, range(400, MAX_COUPONS + 1))]
    found: list[list[float]] = []

    def search(y: list[float], i: int) -> None:
        if i == len(spans):
            found.append(list(y))
            return
        knot, counts = spans[i]
        for k in range(-8, 9):
            y[knot] = ulp_step(roots[knot], k)
            if i == 0 or all(estimate(y, n) == lib[n] for n in counts):
                search(y, i + 1)
        y[knot] = roots[knot]

    search(list(roots), 0)
    if len(found) != 1:
        raise SystemExit(f"hll_constants: {len(found)} sets of knots reproduce the library (need exactly 1)")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with COUPON_Y in bridge/msewatch/_decide.c")
    args = ap.parse_args(argv)
    roots = [0.0, 1.0] + [float(exact_knot(x)) for x in X[2:]]
    knots = calibrate(roots, library_estimates())
    for x, r, k in zip(X, roots, knots):
        print(f"x={x:>9.0f}  exact root {r.hex():>24}  knot {k.hex():>24}  ({k!r})")
    literal = ", ".join(k.hex().replace("0x1.0000000000000p+0", "1.0").replace("0x0.0p+0", "0.0") for k in knots)
    print(f"static const double COUPON_Y[6] = {{{literal}}};")
    if args.check:
        src = (Path(__file__).resolve().parents[1] / "bridge" / "msewatch" / "_decide.c").read_text()
        m = re.search(r"COUPON_Y\[6\] = \{([^}]*)\}", src)
        have = [float.fromhex(t) if t.strip().startswith("0x") else float(t) for t in m.group(1).split(",")] if m else []
        if have != knots:
            print("hll_constants: bridge/msewatch/_decide.c COUPON_Y differs", file=sys.stderr)
            return 1
        print("bridge/msewatch/_decide.c COUPON_Y: the same")
    return 0


if __name__ == "__main__":
    sys.exit(main())
