"""Inline SVG charts for the report: small, dependency-free, readable without JavaScript.

Every chart is one `<svg>` element with an `id`, a `class="chart chart-<kind>"`, a
`<title>` (shown as a tooltip and read by screen readers) and a `viewBox`, so it scales
with the page. Nothing is fetched when the report is opened.

The MSE/PE spec ranges (Vuze MSE spec; DetectParams mse_* fields) are drawn as shaded
bands behind the direction bursts:
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
FONT = "font-family:system-ui,sans-serif"


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


def _text(x: float, y: float, s: str, size: int = 10, anchor: str = "start", fill: str = TEXT, extra: str = "") -> str:
    return (
        f'<text x="{_f(x)}" y="{_f(y)}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{extra}>'
        f"{escape(s)}</text>"
    )


def _fmt_bytes(v: float) -> str:
    a = abs(v)
    if a >= 1_000_000:
        return f"{v / 1e6:.1f}M"
    if a >= 10_000:
        return f"{v / 1e3:.0f}k"
    return str(int(v))


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
    bands: MseBands = MseBands(),
    title: str = "Direction bursts and first payload sizes",
) -> str:
    """Two panels on one signed log axis: the K direction bursts (with the MSE spec bands behind
    bursts 1-4) and the first N payload sizes. Bars go up for orig->resp, down for resp->orig."""
    w, h = 640, 250
    top_pad, bottom_pad, left = 22, 22, 46
    mid = top_pad + (h - top_pad - bottom_pad) / 2
    half = (h - top_pad - bottom_pad) / 2
    biggest = max([abs(v) for v in list(bursts) + list(sizes)] + [1000])
    top = 10 ** math.ceil(math.log10(biggest))
    y = _SignedLog(top, mid, half)
    fits = bands.fits(bursts)
    in_band = sum(fits)
    desc = (
        f"{len(bursts)} bursts {list(bursts)}; {len(sizes)} payload sizes; "
        f"{in_band} of the first {min(4, len(bursts))} bursts inside the MSE spec ranges"
    )
    out = _svg_open(chart_id, "bursts", title, w, h, desc)
    # panels: bursts on the left (K slots, at least 4), sizes on the right
    k_slots = max(4, len(bursts))
    n_slots = max(8, len(sizes))
    gap = 28
    pw_b = (w - left - gap - 10) * 0.36
    pw_s = (w - left - gap - 10) - pw_b
    x_b0, x_s0 = left, left + pw_b + gap
    # grid and axis labels
    dec = int(round(math.log10(top)))
    for e in range(1, dec + 1):
        for sign in (1, -1):
            yy = y(sign * 10**e)
            out.append(f'<line x1="{left}" x2="{w - 10}" y1="{_f(yy)}" y2="{_f(yy)}" stroke="{GRID}"/>')
            out.append(_text(left - 4, yy + 3, _fmt_bytes(10**e), 9, "end", AXIS))
    out.append(_text(left - 4, mid + 3, "0", 9, "end", AXIS))
    out.append(_text(4, top_pad - 8, "↑ orig→resp", 9, "start", ORIG))
    out.append(_text(4, h - 6, "↓ resp→orig", 9, "start", RESP))
    out.append(_text(w - 10, h - 6 + 0, "bytes, log scale", 8, "end", AXIS))
    # burst panel
    slot_b = pw_b / k_slots
    out.append(_text(x_b0 + pw_b / 2 + 20, top_pad - 8, "direction bursts", 10, "middle", TEXT, ' font-weight="bold"'))
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
        outline = ""
        if i < 4:
            outline = f' stroke="{BAND if fits[i] else "#c53030"}" stroke-width="2"'
        state = "" if i >= 4 else (" (in MSE range)" if fits[i] else " (outside MSE range)")
        out.append(
            f'<rect class="bar burst" x="{_f(x)}" y="{_f(y1)}" width="{_f(bw)}" height="{_f(max(1.0, y2 - y1))}" '
            f'fill="{color}"{outline}><title>burst {i + 1}: {b} bytes{state}</title></rect>'
        )
        ty = y1 - 3 if b > 0 else y2 + 10
        out.append(_text(x + bw / 2, ty, _fmt_bytes(b), 9, "middle"))
        out.append(_text(x + bw / 2, h - 8, str(i + 1), 9, "middle", AXIS))
    # sizes panel
    slot_s = pw_s / n_slots
    out.append(_text(x_s0 + pw_s / 2, top_pad - 8, "first payload sizes", 10, "middle", TEXT, ' font-weight="bold"'))
    for i, s in enumerate(sizes):
        x = x_s0 + i * slot_s + slot_s * 0.15
        bw = max(1.0, slot_s * 0.7)
        yy = y(s)
        y1, y2 = sorted((yy, mid))
        out.append(
            f'<rect class="bar size" x="{_f(x)}" y="{_f(y1)}" width="{_f(bw)}" height="{_f(max(1.0, y2 - y1))}" '
            f'fill="{ORIG if s > 0 else RESP}"><title>packet {i + 1}: {s} bytes</title></rect>'
        )
        if i == 0 or (i + 1) % 4 == 0:
            out.append(_text(x + bw / 2, h - 8, str(i + 1), 9, "middle", AXIS))
    if not bursts:
        out.append(_text(x_b0 + pw_b / 2, mid - 6, "no payload", 11, "middle", AXIS))
    out.append(f'<line x1="{left}" x2="{w - 10}" y1="{_f(mid)}" y2="{_f(mid)}" stroke="{AXIS}"/>')
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
    w, h = 420, 250
    left, right, top_pad, bottom_pad = 34, 10, 22, 40
    pw, ph = w - left - right, h - top_pad - bottom_pad
    n_max = max([len(b) for _, b, _ in heads] + [16])

    def x(i: float) -> float:
        return left + pw * i / n_max

    def y(v: float) -> float:
        return top_pad + ph * (1 - v / 8)

    desc = "; ".join(f"{name}: {len(b)} bytes, mean {(_mean_pop(b)):.2f} {note}" for name, b, note in heads)
    out = _svg_open(chart_id, "popcount", title, w, h, desc or "no payload heads")
    for v in (0, 2, 4, 6, 8):
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{_f(y(v))}" y2="{_f(y(v))}" stroke="{GRID}"/>')
        out.append(_text(left - 4, y(v) + 3, str(v), 9, "end", AXIS))
    out.append(
        f'<rect class="spec-band popcount-band" x="{left}" y="{_f(y(high))}" width="{pw}" '
        f'height="{_f(y(low) - y(high))}" fill="{BAND}" fill-opacity="0.18" stroke="{BAND}" stroke-opacity="0.5" '
        f'stroke-dasharray="3 2"><title>fully-encrypted band {low}–{high} bits/byte</title></rect>'
    )
    out.append(_text(w - right - 2, y(high) - 3, f"band {low}–{high}", 9, "end", BAND))
    colors = (ORIG, RESP, "#6b46c1", "#2c7a7b")
    legend_y = h - 22
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
        lx = left + (pw / max(1, len(heads))) * j
        out.append(f'<rect x="{_f(lx)}" y="{legend_y - 8}" width="10" height="10" fill="{c}"/>')
        out.append(_text(lx + 13, legend_y, f"{name}: {_mean_pop(data):.2f} {note}".strip(), 9))
    if not heads:
        out.append(_text(left + pw / 2, top_pad + ph / 2, "no payload heads", 11, "middle", AXIS))
    out.append(_text(left + pw / 2, h - 6, "byte offset in head", 9, "middle", AXIS))
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
    w, h = 420, 250
    left, right, top_pad, bottom_pad = 34, 62, 22, 30
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
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{_f(y(v))}" y2="{_f(y(v))}" stroke="{GRID}"/>')
        out.append(_text(left - 4, y(v) + 3, f"{v:g}", 9, "end", AXIS))
    for t, name, c in ((t_high, "T_high", "#c53030"), (t_low, "T_low", "#2f855a")):
        out.append(
            f'<line class="threshold" x1="{left}" x2="{left + pw}" y1="{_f(y(t))}" y2="{_f(y(t))}" stroke="{c}" '
            f'stroke-dasharray="6 3" stroke-width="1.5"><title>{name} = {t}</title></line>'
        )
        out.append(_text(left + pw + 3, y(t) + 3, f"{name} {t:g}", 9, "start", c))
    if decided_at_packet:
        xd = x(decided_at_packet)
        out.append(
            f'<line class="decided" x1="{_f(xd)}" x2="{_f(xd)}" y1="{top_pad}" y2="{top_pad + ph}" stroke="{AXIS}" '
            f'stroke-dasharray="2 2"><title>decided at packet {decided_at_packet}</title></line>'
        )
        out.append(_text(xd + 2, top_pad - 6, f"decided @{decided_at_packet}", 9, "start", AXIS))
    step = max(1, int(n_max // 8))
    for n in range(0, int(n_max) + 1, step):
        out.append(_text(x(n), top_pad + ph + 12, str(n), 9, "middle", AXIS))
    out.append(_text(left + pw / 2, h - 4, "payload packets", 9, "middle", AXIS))
    if path:
        pts = " ".join(f"{_f(x(n))},{_f(y(p))}" for n, p in path)
        out.append(f'<polyline class="score-line" points="{pts}" fill="none" stroke="{ORIG}" stroke-width="2"/>')
        for n, p in path:
            out.append(
                f'<circle class="score-point" cx="{_f(x(n))}" cy="{_f(y(p))}" r="3.5" fill="{ORIG}">'
                f"<title>after {int(n)} payload packets: P = {p:.4f}</title></circle>"
            )
    else:
        out.append(_text(left + pw / 2, top_pad + ph / 2, "no score path", 11, "middle", AXIS))
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
    w = 900
    left, right = 120, 16
    pw = w - left - right
    h_bars, h_lines, row_h = 70, 80, 18
    top = 14
    y_bars = top
    y_lines = y_bars + h_bars + 18
    y_events = y_lines + h_lines + 14
    h = y_events + row_h * max(1, len(events)) + 30
    span = max(span, 1.0)

    def x(t: float) -> float:
        return left + pw * min(max(t, 0.0), span) / span

    out = _svg_open(chart_id, "host", title, w, h)
    # new flows
    vmax = max(list(new_flows.values) + [1])
    out.append(_text(left - 6, y_bars + 10, f"new flows / {_dur(new_flows.bucket)}", 9, "end", AXIS))
    out.append(_text(left - 6, y_bars + 22, f"max {vmax}", 9, "end", AXIS))
    bw = pw * new_flows.bucket / span
    for i, v in enumerate(new_flows.values):
        if not v:
            continue
        bh = h_bars * v / vmax
        out.append(
            f'<rect class="bar newflows" x="{_f(x(i * new_flows.bucket))}" y="{_f(y_bars + h_bars - bh)}" '
            f'width="{_f(max(1.0, bw - 0.5))}" height="{_f(bh)}" fill="{new_flows.color}">'
            f"<title>{_dur(i * new_flows.bucket)}: {v} new flows</title></rect>"
        )
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y_bars + h_bars}" y2="{y_bars + h_bars}" stroke="{AXIS}"/>')
    # distinct peers
    pmax = max([max(s.values, default=0) for s in peers] + [1])
    out.append(_text(left - 6, y_lines + 10, "distinct remote IPs", 9, "end", AXIS))
    out.append(_text(left - 6, y_lines + 22, f"max {pmax}", 9, "end", AXIS))
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
        out.append(f'<rect x="{left - 110}" y="{y_lines + 32 + 12 * j}" width="8" height="8" fill="{s.color}"/>')
        out.append(_text(left - 99, y_lines + 40 + 12 * j, s.name, 9, "start", AXIS))
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y_lines + h_lines}" y2="{y_lines + h_lines}" stroke="{AXIS}"/>')
    # event rows
    for j, row in enumerate(events):
        yy = y_events + j * row_h + row_h / 2
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{_f(yy)}" y2="{_f(yy)}" stroke="{GRID}"/>')
        out.append(_text(left - 6, yy + 3, f"{row.name} ({len(row.times)})", 9, "end", row.color))
        for i, t in enumerate(row.times):
            lab = row.labels[i] if i < len(row.labels) else ""
            out.append(
                f'<rect class="event" x="{_f(x(t) - 2)}" y="{_f(yy - 6)}" width="4" height="12" fill="{row.color}">'
                f"<title>{_dur(t)}: {escape(row.name)} {escape(lab)}</title></rect>"
            )
    # time axis
    ya = h - 18
    for k in range(0, 7):
        t = span * k / 6
        out.append(f'<line x1="{_f(x(t))}" x2="{_f(x(t))}" y1="{top}" y2="{ya - 8}" stroke="{GRID}" stroke-opacity="0.6"/>')
        out.append(_text(x(t), ya + 2, "+" + _dur(t), 9, "middle", AXIS))
    out.append(_text(left + pw / 2, h - 3, "time since the host's first flow", 9, "middle", AXIS))
    out.append("</svg>")
    return "".join(out)


def _dur(s: float) -> str:
    if s < 120:
        return f"{s:.0f}s" if s >= 10 or s == int(s) else f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


# ---------------------------------------------------------------------------- histogram
def histogram_chart(
    chart_id: str,
    stacks: dict[str, Sequence[int]],
    colors: dict[str, str],
    edges: Sequence[float],
    title: str,
    x_label: str,
    marks: Iterable[tuple[float, str]] = (),
) -> str:
    """Stacked histogram (counts per bin, one stack per key) on a sqrt count scale."""
    w, h = 640, 200
    left, right, top_pad, bottom_pad = 46, 10, 24, 34
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
    for frac in (0.25, 1.0):
        c = vmax * frac
        yy = top_pad + ph - yh(c)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{_f(yy)}" y2="{_f(yy)}" stroke="{GRID}"/>')
        out.append(_text(left - 4, yy + 3, f"{c:.0f}", 9, "end", AXIS))
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
    for v, name in marks:
        out.append(
            f'<line class="threshold" x1="{_f(x(v))}" x2="{_f(x(v))}" y1="{top_pad}" y2="{top_pad + ph}" '
            f'stroke="#c53030" stroke-dasharray="5 3"/>'
        )
        out.append(_text(x(v), top_pad - 4, name, 9, "middle", "#c53030"))
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top_pad + ph}" y2="{top_pad + ph}" stroke="{AXIS}"/>')
    for k in range(0, 11, 2):
        v = lo + (hi - lo) * k / 10
        out.append(_text(x(v), top_pad + ph + 12, f"{v:g}", 9, "middle", AXIS))
    out.append(_text(left + pw / 2, h - 4, x_label + " (bar height: √count)", 9, "middle", AXIS))
    lx = left + pw - sum(14 + 6 * len(k) for k in stacks)
    for key in stacks:
        out.append(f'<rect x="{_f(lx)}" y="{top_pad - 18}" width="8" height="8" fill="{colors.get(key, AXIS)}"/>')
        out.append(_text(lx + 11, top_pad - 10, key, 9))
        lx += 14 + 6 * len(key)
    out.append("</svg>")
    return "".join(out)
