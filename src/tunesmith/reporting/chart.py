"""Small, dependency-free inline SVG line charts for HTML reports (no JavaScript, no fonts)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

_PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="12"'
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 52, 48
_CHAR_PX = 7  # rough width of one legend character at 12px


@dataclass(frozen=True)
class _Frame:
    """Maps data coordinates onto the plot area of a ``width`` x ``height`` SVG."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float

    @property
    def left(self) -> float:
        return _LEFT

    @property
    def right(self) -> float:
        return self.width - _RIGHT

    @property
    def top(self) -> float:
        return _TOP

    @property
    def bottom(self) -> float:
        return self.height - _BOTTOM

    def px(self, x: float, y: float) -> tuple[float, float]:
        """SVG coordinates of the data point (x, y); larger y is drawn higher."""
        fx = (x - self.x0) / (self.x1 - self.x0)
        fy = (y - self.y0) / (self.y1 - self.y0)
        return self.left + fx * (self.right - self.left), self.bottom - fy * (self.bottom - self.top)


def _nice_ticks(lo: float, hi: float) -> tuple[list[float], float]:
    """4-6 evenly spaced round ticks (step 1, 2, 2.5 or 5 x 10^k) covering [lo, hi]; returns (ticks, step)."""
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    base = 10.0 ** math.floor(math.log10((hi - lo) / 4))
    best: tuple[float, int, int, float] | None = None
    for scale in (0.1, 1.0, 10.0):
        for mult in (1.0, 2.0, 2.5, 5.0):
            step = mult * base * scale
            first = math.floor(lo / step + 1e-9)
            last = math.ceil(hi / step - 1e-9)
            count = last - first + 1
            score = 0.0 if 4 <= count <= 6 else min(abs(count - 4), abs(count - 6)) + 10.0
            # among valid ones prefer the tightest axis, and 2.5 steps only when clearly tighter
            score += ((last - first) * step / (hi - lo) + (0.25 if mult == 2.5 else 0.0)) * 1e-3
            if best is None or score < best[0]:
                best = (score, first, last, step)
    assert best is not None
    _, first, last, step = best
    return [k * step for k in range(first, last + 1)], step


def _fmt_tick(value: float, step: float) -> str:
    """A tick label with just enough decimals to tell ticks ``step`` apart."""
    if abs(value) < step * 1e-6:
        value = 0.0
    if not 1e-4 <= step < 1e6:
        return f"{value:.3g}"
    decimals = 0
    while abs(round(step, decimals) - step) > step * 1e-9 and decimals < 8:
        decimals += 1
    return f"{value:.{decimals}f}"


def _clean(series: Mapping[str, Sequence[tuple[float, float]]]) -> dict[str, list[tuple[float, float]]]:
    """Finite points only, sorted by x; series left without points are dropped."""
    out: dict[str, list[tuple[float, float]]] = {}
    for name, points in series.items():
        finite = sorted((float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y))
        if finite:
            out[name] = finite
    return out


def _open(title: str, width: int, height: int) -> list[str]:
    t = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="{t}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {_FONT}>',
        f"<title>{t}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{width / 2:.1f}" y="18" text-anchor="middle" font-size="14" font-weight="600">{t}</text>',
    ]


def _axes(frame: _Frame, x_ticks: tuple[list[float], float], y_ticks: tuple[list[float], float],
          x_label: str, y_label: str) -> list[str]:
    """Grid lines, tick labels, the axis frame and both axis labels."""
    parts = ['<g class="axes" stroke="#dddddd" stroke-width="1">']
    labels = ['<g class="ticks" fill="#444444">']
    for x in x_ticks[0]:
        px, _ = frame.px(x, frame.y0)
        parts.append(f'<line x1="{px:.1f}" y1="{frame.top}" x2="{px:.1f}" y2="{frame.bottom}"/>')
        labels.append(f'<text class="tick-x" x="{px:.1f}" y="{frame.bottom + 16}" text-anchor="middle">'
                      f"{_fmt_tick(x, x_ticks[1])}</text>")
    for y in y_ticks[0]:
        _, py = frame.px(frame.x0, y)
        parts.append(f'<line x1="{frame.left}" y1="{py:.1f}" x2="{frame.right}" y2="{py:.1f}"/>')
        labels.append(f'<text class="tick-y" x="{frame.left - 6}" y="{py + 4:.1f}" text-anchor="end">'
                      f"{_fmt_tick(y, y_ticks[1])}</text>")
    parts.append(f'<rect x="{frame.left}" y="{frame.top}" width="{frame.right - frame.left}" '
                 f'height="{frame.bottom - frame.top}" fill="none" stroke="#888888"/>')
    parts.append("</g>")
    labels.append("</g>")
    mid_x, mid_y = (frame.left + frame.right) / 2, (frame.top + frame.bottom) / 2
    return parts + labels + [
        f'<text class="x-label" x="{mid_x:.1f}" y="{frame.height - 8}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text class="y-label" x="14" y="{mid_y:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {mid_y:.1f})">{escape(y_label)}</text>',
    ]


def _markers(frame: _Frame, name: str, points: list[tuple[float, float]], color: str) -> str:
    """A small circle per data point, each titled with its exact values (hover shows them)."""
    label = escape(name)
    dots = []
    for x, y in points:
        cx, cy = frame.px(x, y)
        dots.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{color}" data-x="{x:g}" '
                    f'data-y="{y:g}"><title>{label}: ({x:g}, {y:g})</title></circle>')
    return f'<g class="points" data-series="{label}">' + "".join(dots) + "</g>"


def _series(frame: _Frame, name: str, points: list[tuple[float, float]], color: str) -> str:
    """One polyline, or a circle marker when the series has a single point."""
    label = escape(name)
    if len(points) == 1:
        (x, y), = points
        cx, cy = frame.px(x, y)
        return (f'<circle class="series" cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{color}">'
                f"<title>{label}: ({x:g}, {y:g})</title></circle>")
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in (frame.px(x, y) for x, y in points))
    return (f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" '
            f'stroke-linejoin="round" points="{coords}"><title>{label}</title></polyline>')


def _legend(names: list[str], width: int) -> list[str]:
    """Colour swatch + name per series, in rows under the title."""
    parts = ['<g class="legend">']
    x, y = float(_LEFT), 38.0
    for i, name in enumerate(names):
        span = 26 + _CHAR_PX * len(name)
        if x + span > width - _RIGHT and x > _LEFT:
            x, y = float(_LEFT), y + 14
        color = _PALETTE[i % len(_PALETTE)]
        parts.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 18:.1f}" y2="{y - 4:.1f}" '
                     f'stroke="{color}" stroke-width="3"/>')
        parts.append(f'<text x="{x + 22:.1f}" y="{y:.1f}">{escape(name)}</text>')
        x += span + 12
    parts.append("</g>")
    return parts


def line_chart(series: Mapping[str, Sequence[tuple[float, float]]], *, title: str, x_label: str, y_label: str,
               width: int = 640, height: int = 320, markers: bool = False) -> str:
    """An inline <svg> line chart: one polyline per non-empty series (x ascending), axes with 4-6 'nice'
    tick labels each, a legend, and an accessible <title>. Series with a single point draw a marker (circle);
    ``markers`` adds a titled circle (``class="point"``, ``data-x``/``data-y``) at every data point.
    Empty input -> an <svg> that says 'no data'. Values must be finite; non-finite points are skipped."""
    clean = _clean(series)
    parts = _open(title, width, height)
    if not clean:
        parts.append(f'<text class="no-data" x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" '
                     f'fill="#777777">no data</text>')
        return "\n".join([*parts, "</svg>"])
    xs = [x for points in clean.values() for x, _ in points]
    ys = [y for points in clean.values() for _, y in points]
    x_ticks, y_ticks = _nice_ticks(min(xs), max(xs)), _nice_ticks(min(ys), max(ys))
    frame = _Frame(width, height, x_ticks[0][0], x_ticks[0][-1], y_ticks[0][0], y_ticks[0][-1])
    parts += _axes(frame, x_ticks, y_ticks, x_label, y_label)
    for i, (name, points) in enumerate(clean.items()):
        parts.append(_series(frame, name, points, _PALETTE[i % len(_PALETTE)]))
        if markers:
            parts.append(_markers(frame, name, points, _PALETTE[i % len(_PALETTE)]))
    parts += _legend(list(clean), width)
    return "\n".join([*parts, "</svg>"])
