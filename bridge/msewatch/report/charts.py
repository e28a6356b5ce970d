"""Inline SVG charts for the report: small, dependency-free, readable without JavaScript.

Every chart is one `<svg>` element with an `id`, a `class="chart chart-<kind>"`, a
`<title>` (shown as a tooltip and read by screen readers) and a `viewBox` drawn at the size
it is shown at 1400 px, so text stays at its size and the chart still scales with the page.
Axes carry ticks with values; legends and labels have rows of their own, so nothing
overlaps. Nothing is fetched when the report is opened.

The MSE/PE spec ranges (Vuze MSE spec; DetectParams mse_* fields) are drawn as shaded
bands behind the direction bursts of flows the MSE question applies to (TCP flows guessed
bt_mse or with no protocol recognised):
  burst 1 (orig, Ya + PadA) 96..608, burst 2 (resp, Yb + PadB) 96..608,
  burst 3 (orig, step 3)   >= 56,   burst 4 (resp, step 4)   >= 14.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Iterable, Sequence

ORIG = "#2b6cb0"  # orig -> resp
RESP = "#dd6b20"  # resp -> orig
BAND = "#38a169"
GRID = "#e2e8f0"
AXIS = "#4a5568"
TEXT = "#1a202c"
THRESH_HIGH = "#c53030"
THRESH_LOW = "#2f855a"
FONT = "font-family:system-ui,sans-serif"
TICK = 11  # tick label size (px at 1:1)
SMALL = 10


@dataclass(frozen=True, slots=True)
class MseBands:
    """The spec ranges of the first four bursts: (low, high) in bytes, high None = open."""

    step12_min: int = 96
    step12_max: int = 608
    step3_min: int = 56
    step4_min: int = 14

    def band(self, i: int) -> tuple[int, int | None] | None:
        """Band of burst i (0-based) as (low, high); sign follows the burst's expected direction."""
        return {
            0: (self.step12_min, self.step12_max),
            1: (self.step12_min, self.step12_max),
            2: (self.step3_min, None),
            3: (self.step4_min, None),
        }.get(i)

    @staticmethod
    def expected_sign(i: int) -> int:
        return 1 if i % 2 == 0 else -1

    def fits(self, bursts: Sequence[int]) -> list[bool]:
        """Per burst 1..4: does it lie in its band, in the expected direction?"""
        out = []
        for i, b in enumerate(bursts[:4]):
            lo, hi = self.band(i)  # type: ignore[misc]
            v = b * self.expected_sign(i)
            out.append(v >= lo and (hi is None or v <= hi))
        return out


def _f(x: float) -> str:
    """Compact coordinate: at most one decimal."""
    return f"{x:.1f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def _svg_open(chart_id: str, kind: str, title: str, w: int, h: int, desc: str = "") -> list[str]:
    out = [
        f'<svg id="{escape(chart_id)}" class="chart chart-{kind}" '
        f'viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" style="{FONT}">',
        f"<title>{escape(title)}</title>",
    ]
    if desc:
        out.append(f"<desc>{escape(desc)}</desc>")
    return out


def _text(x: float, y: float, s: str, size: int = TICK, anchor: str = "start", fill: str = TEXT, extra: str = "") -> str:
    return (
        f'<text x="{_f(x)}" y="{_f(y)}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{extra}>'
        f"{escape(s)}</text>"
    )


def _hline(x1: float, x2: float, y: float, color: str = GRID, extra: str = "") -> str:
    return f'<line x1="{_f(x1)}" x2="{_f(x2)}" y1="{_f(y)}" y2="{_f(y)}" stroke="{color}"{extra}/>'


def _vline(x: float, y1: float, y2: float, color: str = GRID, extra: str = "") -> str:
    return f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{_f(y1)}" y2="{_f(y2)}" stroke="{color}"{extra}/>'


def _fmt_bytes(v: float) -> str:
    a = abs(v)
    if a >= 1_000_000:
        return f"{v / 1e6:.1f}M"
    if a >= 10_000:
        return f"{v / 1e3:.0f}k"
    return str(int(v))


def nice_ceil(v: float) -> float:
    """The smallest 1, 2 or 5 × 10^k that is ≥ v (v > 0)."""
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 5, 10):
        if m * e >= v - 1e-9:
            return float(m * e)
    return float(10 * e)


def nice_step(span: float, max_ticks: int) -> float:
    """A 1/2/5 × 10^k step giving at most max_ticks intervals over span."""
    return nice_ceil(span / max(1, max_ticks))


def _int_ticks(n_max: float, max_ticks: int) -> list[int]:
    step = max(1, int(nice_step(n_max, max_ticks)))
    return list(range(0, int(n_max) + 1, step))


# ---------------------------------------------------------------------------- bursts + sizes
class _SignedLog:
    """y position of a signed byte count on a symmetric log10(1 + |v|) scale."""

    def __init__(self, top: float, mid: float, half: float) -> None:
        self.top_val = top
        self.mid = mid
        self.half = half
        self._den = math.log10(1 + top)

    def __call__(self, v: float) -> float:
        r = math.log10(1 + min(abs(v), self.top_val)) / self._den
        return self.mid - math.copysign(r * self.half, v) if v else self.mid


def bursts_chart(
    chart_id: str,
    bursts: Sequence[int],
    sizes: Sequence[int],
    bands: MseBands | None = MseBands(),
    title: str = "Direction bursts and first payload sizes",
    no_bands_reason: str = "",
) -> str:
    """Two panels on one signed log axis: the K direction bursts (with the MSE spec bands behind
    bursts 1-4 when `bands` is given) and the first N payload sizes. Bars go up for
    orig->resp, down for resp->orig."""
    w, h = 560, 250
    top_pad, bottom_pad, left = 34, 40, 52
    mid = top_pad + (h - top_pad - bottom_pad) / 2
    half = (h - top_pad - bottom_pad) / 2
    biggest = max([abs(v) for v in list(bursts) + list(sizes)] + [1000])
    top = 10 ** math.ceil(math.log10(biggest))
    # 14 px of headroom at both ends, so a bar's value label fits between the bar and the
    # panel titles above or the tick labels below
    y = _SignedLog(top, mid, half - 14)
    fits = bands.fits(bursts) if bands is not None else []
    if bands is not None:
        desc = (f"{len(bursts)} bursts {list(bursts)}; {len(sizes)} payload sizes; {sum(fits)} of the first "
                f"{min(4, len(bursts))} bursts inside the MSE spec ranges")
    else:
        desc = f"{len(bursts)} bursts {list(bursts)}; {len(sizes)} payload sizes; no MSE bands ({no_bands_reason})"
    out = _svg_open(chart_id, "bursts", title, w, h, desc)
    k_slots = max(4, len(bursts))
    n_slots = max(8, len(sizes))
    gap = 26
    pw_b = (w - left - gap - 8) * 0.36
    pw_s = (w - left - gap - 8) - pw_b
    x_b0, x_s0 = left, left + pw_b + gap
    # y axis: decades up and down, values on the ticks
    dec = int(round(math.log10(top)))
    for e in range(1, dec + 1):
        for sign in (1, -1):
            yy = y(sign * 10**e)
            out.append(_hline(left, w - 8, yy))
            out.append(_text(left - 5, yy + 4, _fmt_bytes(10**e), TICK, "end", AXIS))
    out.append(_text(left - 5, mid + 4, "0", TICK, "end", AXIS))
    out.append(_text(4, 12, "↑ orig→resp", SMALL, "start", ORIG))
    out.append(_text(4, h - 4, "↓ resp→orig", SMALL, "start", RESP))
    out.append(_text(w - 8, 12, "bytes, log scale", SMALL, "end", AXIS))
    # panel titles
    out.append(_text(x_b0 + pw_b / 2, top_pad - 8, "direction bursts", TICK, "middle", TEXT, ' font-weight="bold"'))
    out.append(_text(x_s0 + pw_s / 2, top_pad - 8, "first payload sizes", TICK, "middle", TEXT, ' font-weight="bold"'))
    slot_b = pw_b / k_slots
    if bands is not None:
        for i in range(min(4, k_slots)):
            lo, hi = bands.band(i)  # type: ignore[misc]
            sign = bands.expected_sign(i)
            y_lo = y(sign * lo)
            y_hi = y(sign * hi) if hi is not None else (top_pad if sign > 0 else h - bottom_pad)
            y1, y2 = sorted((y_lo, y_hi))
            label = f"MSE step {i + 1}: {lo}–{hi}" if hi else f"MSE step {i + 1}: ≥ {lo}"
            out.append(
                f'<rect class="spec-band" x="{_f(x_b0 + i * slot_b + 1)}" y="{_f(y1)}" width="{_f(slot_b - 2)}" '
                f'height="{_f(max(1.0, y2 - y1))}" fill="{BAND}" fill-opacity="0.18" stroke="{BAND}" '
                f'stroke-opacity="0.5" stroke-dasharray="3 2"><title>{escape(label)}</title></rect>'
            )
    for i, b in enumerate(bursts):
        x = x_b0 + i * slot_b + slot_b * 0.2
        bw = slot_b * 0.6
        yy = y(b)
        y1, y2 = sorted((yy, mid))
        color = ORIG if b > 0 else RESP
        outline, state = "", ""
        if bands is not None and i < 4:
            outline = f' stroke="{BAND if fits[i] else "#c53030"}" stroke-width="2"'
            state = " (in MSE range)" if fits[i] else " (outside MSE range)"
        out.append(
            f'<rect class="bar burst" x="{_f(x)}" y="{_f(y1)}" width="{_f(bw)}" height="{_f(max(1.0, y2 - y1))}" '
            f'fill="{color}"{outline}><title>burst {i + 1}: {b} bytes{state}</title></rect>'
        )
        ty = y1 - 3 if b > 0 else y2 + 11  # in the headroom the scale keeps free
        out.append(_text(x + bw / 2, ty, _fmt_bytes(b), SMALL, "middle"))
    for i in range(k_slots):
        out.append(_text(x_b0 + (i + 0.5) * slot_b, h - bottom_pad + 14, str(i + 1), TICK, "middle", AXIS))
    out.append(_text(x_b0 + pw_b / 2, h - bottom_pad + 28, "burst", SMALL, "middle", AXIS))
    slot_s = pw_s / n_slots
    label_every = 1 if n_slots <= 16 else (2 if n_slots <= 32 else 4)
    for i, s in enumerate(sizes):
        x = x_s0 + i * slot_s + slot_s * 0.15
        bw = max(1.0, slot_s * 0.7)
        yy = y(s)
        y1, y2 = sorted((yy, mid))
        out.append(
            f'<rect class="bar size" x="{_f(x)}" y="{_f(y1)}" width="{_f(bw)}" height="{_f(max(1.0, y2 - y1))}" '
            f'fill="{ORIG if s > 0 else RESP}"><title>packet {i + 1}: {s} bytes</title></rect>'
        )
    for i in range(n_slots):
        if i == 0 or (i + 1) % label_every == 0:
            out.append(_text(x_s0 + (i + 0.5) * slot_s, h - bottom_pad + 14, str(i + 1), TICK, "middle", AXIS))
    out.append(_text(x_s0 + pw_s / 2, h - bottom_pad + 28, "payload packet", SMALL, "middle", AXIS))
    if not bursts:
        out.append(_text(x_b0 + pw_b / 2, mid - 6, "no payload", 12, "middle", AXIS))
    if bands is None and no_bands_reason:  # in the top row, between the corner labels
        out.append(_text(w / 2 - 10, 12, f"no MSE bands: {no_bands_reason}", SMALL, "middle", AXIS,
                         ' class="no-bands"'))
    out.append(_hline(left, w - 8, mid, AXIS))
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------- popcount
def popcount_chart(
    chart_id: str,
    heads: Sequence[tuple[str, bytes, str]],
    low: float = 3.4,
    high: float = 4.6,
    title: str = "Popcount per byte of the first payloads",
) -> str:
    """Per head: each byte's popcount (0..8, faint dots) and the running mean (line), against the
    fully-encrypted band (low, high). `heads` = [(name, bytes, note)], orig first."""
    w, h = 380, 250
    left, right, top_pad, bottom_pad = 36, 10, 14, 62
    pw, ph = w - left - right, h - top_pad - bottom_pad
    n_max = max([len(b) for _, b, _ in heads] + [16])

    def x(i: float) -> float:
        return left + pw * i / n_max

    def y(v: float) -> float:
        return top_pad + ph * (1 - v / 8)

    desc = "; ".join(f"{name}: {len(b)} bytes, mean {(_mean_pop(b)):.2f} {note}" for name, b, note in heads)
    out = _svg_open(chart_id, "popcount", title, w, h, desc or "no payload heads")
    for v in (0, 2, 4, 6, 8):
        out.append(_hline(left, w - right, y(v)))
        out.append(_text(left - 5, y(v) + 4, str(v), TICK, "end", AXIS))
    out.append(
        f'<rect class="spec-band popcount-band" x="{left}" y="{_f(y(high))}" width="{pw}" '
        f'height="{_f(y(low) - y(high))}" fill="{BAND}" fill-opacity="0.18" stroke="{BAND}" stroke-opacity="0.5" '
        f'stroke-dasharray="3 2"><title>fully-encrypted band {low}–{high} bits/byte</title></rect>'
    )
    out.append(_text(w - right - 2, y(high) - 4, f"band {low}–{high}", SMALL, "end", BAND))
    base = top_pad + ph
    for t in _int_ticks(n_max, 6):
        out.append(_vline(x(t), base, base + 4, AXIS))
        out.append(_text(x(t), base + 16, str(t), TICK, "middle", AXIS))
    out.append(_text(left + pw / 2, base + 30, "byte offset in the first payload · y: set bits per byte", SMALL,
                     "middle", AXIS))
    colors = (ORIG, RESP, "#6b46c1", "#2c7a7b")
    legend_y = h - 8
    for j, (name, data, note) in enumerate(heads):
        c = colors[j % len(colors)]
        dots = []
        run = 0
        pts = []
        for i, byte in enumerate(data):
            pc = byte.bit_count()
            run += pc
            dots.append(f"M{_f(x(i + 0.5))} {_f(y(pc) - 1)}h1.6v1.6h-1.6z")
            pts.append(f"{_f(x(i + 1))},{_f(y(run / (i + 1)))}")
        if dots:
            out.append(f'<path class="bytes" d="{"".join(dots)}" fill="{c}" fill-opacity="0.35"/>')
            out.append(
                f'<polyline class="running-mean" points="{" ".join(pts)}" fill="none" stroke="{c}" stroke-width="2">'
                f"<title>{escape(name)}: running mean popcount, final {_mean_pop(data):.2f}</title></polyline>"
            )
        lx = 6 + ((w - 12) / max(1, len(heads))) * j
        out.append(f'<rect x="{_f(lx)}" y="{legend_y - 9}" width="10" height="10" fill="{c}"/>')
        out.append(_text(lx + 13, legend_y, f"{name}: {_mean_pop(data):.2f} {note}".strip(), SMALL))
    if not heads:
        out.append(_text(left + pw / 2, top_pad + ph / 2, "no payload heads", 12, "middle", AXIS))
    out.append("</svg>")
    return "".join(out)


def _mean_pop(b: bytes) -> float:
    return int.from_bytes(b, "big").bit_count() / len(b) if b else 0.0


# ---------------------------------------------------------------------------- score path
def score_path_chart(
    chart_id: str,
    path: Sequence[Sequence[float]],
    t_low: float,
    t_high: float,
    decided_at_packet: int = 0,
    n_packets: int = 0,
    title: str = "Score path: P after each scored prefix",
) -> str:
    """P (0..1) against payload packets, with the T_low / T_high decision lines."""
    w, h = 380, 250
    left, right, top_pad, bottom_pad = 40, 74, 24, 40
    pw, ph = w - left - right, h - top_pad - bottom_pad
    xs = [p[0] for p in path]
    n_max = max(xs + [decided_at_packet, n_packets, 4])

    def x(n: float) -> float:
        return left + pw * n / n_max

    def y(p: float) -> float:
        return top_pad + ph * (1 - p)

    desc = "P by packets: " + ", ".join(f"{int(n)}:{p:.3f}" for n, p in path)
    out = _svg_open(chart_id, "score", title, w, h, desc)
    for v in (0, 0.25, 0.5, 0.75, 1):
        out.append(_hline(left, left + pw, y(v)))
        out.append(_text(left - 5, y(v) + 4, f"{v:g}", TICK, "end", AXIS))
    out.append(_text(6, top_pad - 10, "P", TICK, "start", AXIS, ' font-weight="bold"'))
    for t, name, c in ((t_high, "T_high", THRESH_HIGH), (t_low, "T_low", THRESH_LOW)):
        out.append(
            f'<line class="threshold" x1="{left}" x2="{left + pw}" y1="{_f(y(t))}" y2="{_f(y(t))}" stroke="{c}" '
            f'stroke-dasharray="6 3" stroke-width="1.5"><title>{name} = {t}</title></line>'
        )
        out.append(_text(left + pw + 4, y(t) + 4, f"{name} {t:g}", SMALL, "start", c))
    if decided_at_packet:
        xd = x(decided_at_packet)
        out.append(
            f'<line class="decided" x1="{_f(xd)}" x2="{_f(xd)}" y1="{top_pad}" y2="{top_pad + ph}" stroke="{AXIS}" '
            f'stroke-dasharray="2 2"><title>decided at packet {decided_at_packet}</title></line>'
        )
        anchor = "end" if xd > left + pw * 0.6 else "start"
        out.append(_text(xd + (-3 if anchor == "end" else 3), top_pad - 8, f"decided @ packet {decided_at_packet}",
                         SMALL, anchor, AXIS))
    for n in _int_ticks(n_max, 8):
        out.append(_vline(x(n), top_pad + ph, top_pad + ph + 4, AXIS))
        out.append(_text(x(n), top_pad + ph + 16, str(n), TICK, "middle", AXIS))
    out.append(_text(left + pw / 2, h - 6, "payload packets", SMALL, "middle", AXIS))
    if path:
        pts = " ".join(f"{_f(x(n))},{_f(y(p))}" for n, p in path)
        out.append(f'<polyline class="score-line" points="{pts}" fill="none" stroke="{ORIG}" stroke-width="2"/>')
        for n, p in path:
            out.append(
                f'<circle class="score-point" cx="{_f(x(n))}" cy="{_f(y(p))}" r="3.5" fill="{ORIG}">'
                f"<title>after {int(n)} payload packets: P = {p:.4f}</title></circle>"
            )
    else:
        out.append(_text(left + pw / 2, top_pad + ph / 2, "no score path", 12, "middle", AXIS))
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------- host timeline
@dataclass(frozen=True, slots=True)
class Series:
    name: str
    bucket: float  # seconds
    values: Sequence[int]  # per bucket from t0
    color: str


@dataclass(frozen=True, slots=True)
class EventRow:
    name: str
    times: Sequence[float]  # seconds since t0
    color: str
    labels: Sequence[str] = ()


_NICE_DUR = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _time_step(span: float, max_ticks: int = 10) -> float:
    for s in _NICE_DUR:
        if span / s <= max_ticks:
            return float(s)
    return nice_step(span, max_ticks)


def _count_axis(out: list[str], left: float, right: float, y_top: float, height: float, vmax: int) -> float:
    """Ticks 0, vmax/2, vmax (a nice vmax) with values and grid lines; returns the nice max."""
    top = max(2.0, nice_ceil(vmax))
    for frac in (0.0, 0.5, 1.0):
        yy = y_top + height * (1 - frac)
        out.append(_hline(left, right, yy, GRID if frac else AXIS))
        out.append(_text(left - 5, yy + 4, f"{top * frac:g}", TICK, "end", AXIS))
    return top


def host_timeline_chart(
    chart_id: str,
    span: float,
    new_flows: Series,
    peers: Sequence[Series],
    events: Sequence[EventRow],
    title: str,
) -> str:
    """Three stacked panels on one time axis (seconds since the host's first flow):
    new flows per bucket (bars), distinct remote IPs per bucket (step lines), and event rows
    (discovery next to encrypted peer flows)."""
    w = 1300
    left, right = 170, 16
    pw = w - left - right
    h_bars, h_lines, row_h = 56, 60, 18
    y_bars = 22
    y_lines = y_bars + h_bars + 30
    y_events = y_lines + h_lines + 16
    y_axis = y_events + row_h * max(1, len(events)) + 6
    h = y_axis + 34
    span = max(span, 1.0)

    def x(t: float) -> float:
        return left + pw * min(max(t, 0.0), span) / span

    out = _svg_open(chart_id, "host", title, w, h)
    # time grid first, behind everything
    step = _time_step(span)
    t = 0.0
    ticks = []
    while t <= span + 1e-9:
        ticks.append(t)
        t += step
    for t in ticks:
        out.append(_vline(x(t), y_bars, y_axis, GRID, ' stroke-opacity="0.7"'))
    # new flows
    out.append(_text(left, y_bars - 7, f"new flows per {_dur(new_flows.bucket)}", SMALL, "start", TEXT,
                     ' font-weight="bold"'))
    vmax = _count_axis(out, left, left + pw, y_bars, h_bars, max(list(new_flows.values) + [1]))
    bw = pw * new_flows.bucket / span
    for i, v in enumerate(new_flows.values):
        if not v:
            continue
        bh = h_bars * v / vmax
        x0 = x(i * new_flows.bucket)
        out.append(
            f'<rect class="bar newflows" x="{_f(x0)}" y="{_f(y_bars + h_bars - bh)}" '
            f'width="{_f(max(1.0, min(bw - 0.5, left + pw - x0)))}" height="{_f(bh)}" fill="{new_flows.color}">'
            f"<title>+{_dur(i * new_flows.bucket)}: {v} new flows</title></rect>"
        )
    # distinct peers
    head = ["distinct remote IPs:"]
    out.append(_text(left, y_lines - 7, head[0], SMALL, "start", TEXT, ' font-weight="bold"'))
    lx = left + 120
    for j, s in enumerate(peers):
        dash = ' stroke-dasharray="5 3"' if j else ""
        out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{y_lines - 11}" y2="{y_lines - 11}" stroke="{s.color}" '
                   f'stroke-width="2"{dash}/>')
        out.append(_text(lx + 22, y_lines - 7, s.name, SMALL, "start", AXIS))
        lx += 36 + 6 * len(s.name)
    pmax = _count_axis(out, left, left + pw, y_lines, h_lines, max([max(s.values, default=0) for s in peers] + [1]))
    for j, s in enumerate(peers):
        pts = []
        for i, v in enumerate(s.values):
            yy = y_lines + h_lines * (1 - v / pmax)
            pts.append(f"{_f(x(i * s.bucket))},{_f(yy)} {_f(x((i + 1) * s.bucket))},{_f(yy)}")
        if pts:
            dash = ' stroke-dasharray="5 3"' if j else ""
            out.append(
                f'<polyline class="peers" points="{" ".join(pts)}" fill="none" stroke="{s.color}" stroke-width="1.8"{dash}>'
                f"<title>{escape(s.name)}</title></polyline>"
            )
    # event rows
    for j, row in enumerate(events):
        yy = y_events + j * row_h + row_h / 2
        out.append(_hline(left, left + pw, yy))
        out.append(_text(left - 6, yy + 4, f"{row.name} ({len(row.times)})", TICK, "end", row.color))
        for i, t in enumerate(row.times):
            lab = row.labels[i] if i < len(row.labels) else ""
            out.append(
                f'<rect class="event" x="{_f(x(t) - 2)}" y="{_f(yy - 6)}" width="4" height="12" fill="{row.color}">'
                f"<title>+{_dur(t)}: {escape(row.name)} {escape(lab)}</title></rect>"
            )
    # time axis
    out.append(_hline(left, left + pw, y_axis, AXIS))
    for t in ticks:
        out.append(_vline(x(t), y_axis, y_axis + 4, AXIS))
        out.append(_text(x(t), y_axis + 16, "+" + _dur(t), TICK, "middle", AXIS))
    out.append(_text(left + pw / 2, h - 3, "time since the host's first flow", SMALL, "middle", AXIS))
    out.append("</svg>")
    return "".join(out)


def _dur(s: float) -> str:
    if s < 1 and s:
        return f"{s:.1f}s"
    if s < 120:
        return f"{s:.0f}s" if s >= 10 or s == int(s) else f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.0f}m" if s % 60 == 0 or s >= 600 else f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


# ---------------------------------------------------------------------------- histogram
def _sqrt_ticks(vmax: int) -> list[int]:
    """Count ticks for a √count axis: 1/2/5 × 10^k values spread over the axis, at most 6."""
    cands = [m * 10**e for e in range(0, 10) for m in (1, 2, 5) if m * 10**e <= vmax]
    if not cands:
        return [0]
    picked: list[int] = [0]
    last = 0.0
    for c in cands:
        pos = math.sqrt(c / vmax)
        if pos - last >= 0.14:
            picked.append(c)
            last = pos
    return picked[-6:] if len(picked) > 6 else picked


def histogram_chart(
    chart_id: str,
    stacks: dict[str, Sequence[int]],
    colors: dict[str, str],
    edges: Sequence[float],
    title: str,
    x_label: str,
    marks: Iterable[tuple[float, str]] = (),
) -> str:
    """Stacked histogram (counts per bin, one stack per key) on a √count scale. The legend and
    the threshold labels have rows of their own above the plot."""
    w, h = 760, 270
    left, right, top_pad, bottom_pad = 50, 14, 48, 40
    pw, ph = w - left - right, h - top_pad - bottom_pad
    nb = len(edges) - 1
    totals = [sum(v[i] for v in stacks.values()) for i in range(nb)]
    vmax = max(totals + [1])
    lo, hi = edges[0], edges[-1]

    def x(v: float) -> float:
        return left + pw * (v - lo) / (hi - lo)

    def yh(c: float) -> float:
        return ph * math.sqrt(c / vmax)

    out = _svg_open(chart_id, "hist", title, w, h, f"{sum(totals)} items")
    # legend row
    lx = left
    for key in stacks:
        out.append(f'<rect x="{_f(lx)}" y="5" width="10" height="10" fill="{colors.get(key, AXIS)}"/>')
        out.append(_text(lx + 14, 14, key, SMALL))
        lx += 30 + 6.5 * len(key)
    out.append(_text(w - right, 14, "bar height: √count", SMALL, "end", AXIS))
    for c in _sqrt_ticks(vmax):
        yy = top_pad + ph - yh(c)
        out.append(_hline(left, left + pw, yy))
        out.append(_text(left - 5, yy + 4, str(c), TICK, "end", AXIS))
    for i in range(nb):
        base = 0
        for key, vals in stacks.items():
            c = vals[i]
            if not c:
                continue
            y0 = top_pad + ph - yh(base + c)
            y1 = top_pad + ph - yh(base)
            out.append(
                f'<rect class="bar hist" x="{_f(x(edges[i]) + 0.5)}" y="{_f(y0)}" '
                f'width="{_f(max(1.0, x(edges[i + 1]) - x(edges[i]) - 1))}" height="{_f(max(0.5, y1 - y0))}" '
                f'fill="{colors.get(key, AXIS)}"><title>{escape(key)} {edges[i]:g}–{edges[i + 1]:g}: {c}</title></rect>'
            )
            base += c
    # threshold marks: the line in the plot, the label in its own row above it
    for v, name in marks:
        c = THRESH_HIGH if "high" in name.lower() else THRESH_LOW
        out.append(
            f'<line class="threshold" x1="{_f(x(v))}" x2="{_f(x(v))}" y1="{top_pad - 6}" y2="{top_pad + ph}" '
            f'stroke="{c}" stroke-dasharray="5 3"><title>{escape(name)} = {v:g}</title></line>'
        )
        out.append(_text(x(v), top_pad - 10, f"{name} {v:g}", SMALL, "middle", c, ' class="threshold-label"'))
    out.append(_hline(left, left + pw, top_pad + ph, AXIS))
    for k in range(0, 11):
        v = lo + (hi - lo) * k / 10
        out.append(_vline(x(v), top_pad + ph, top_pad + ph + 4, AXIS))
        out.append(_text(x(v), top_pad + ph + 16, f"{v:g}", TICK, "middle", AXIS))
    out.append(_text(left + pw / 2, h - 4, x_label, SMALL, "middle", AXIS))
    out.append("</svg>")
    return "".join(out)
