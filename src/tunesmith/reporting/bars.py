"""Inline SVG horizontal bar charts (grouped bars, one colour per series) for HTML reports."""

from __future__ import annotations

import math
from collections.abc import Mapping
from html import escape

from tunesmith.reporting.chart import _PALETTE, _open

_LABEL_W, _VALUE_W, _BAR_H, _GAP, _TOP = 150, 64, 14, 10, 52


def _label(value: float, percent: bool) -> str:
    return f"{value * 100:.1f}%" if percent else f"{value:g}"


def bar_chart(groups: Mapping[str, Mapping[str, float]], *, title: str, percent: bool = True,
              maximum: float | None = None, width: int = 640) -> str:
    """An inline <svg> with one block of bars per group (e.g. a category) and one bar per series
    (e.g. a model) in a fixed colour, each labelled with its value (as a percentage when
    ``percent``). Bars scale to ``maximum`` (default: 1 for percentages, else the largest value).
    Non-finite values are skipped; no data -> an <svg> that says 'no data'."""
    clean = {g: {s: float(v) for s, v in series.items() if v is not None and math.isfinite(float(v))}
             for g, series in groups.items()}
    clean = {g: s for g, s in clean.items() if s}
    names = list(dict.fromkeys(s for series in clean.values() for s in series))
    rows = sum(len(s) for s in clean.values())
    height = _TOP + rows * _BAR_H + len(clean) * _GAP + 16
    parts = _open(title, width, max(height, 90))
    if not clean:
        parts.append(f'<text class="no-data" x="{width / 2:.1f}" y="60" text-anchor="middle" fill="#777777">no data</text>')
        return "\n".join([*parts, "</svg>"])
    top = maximum if maximum is not None else (1.0 if percent else max(v for s in clean.values() for v in s.values()))
    top = top or 1.0
    span = width - _LABEL_W - _VALUE_W - 8
    parts += _legend(names, width)
    y = float(_TOP)
    for group, series in clean.items():
        block = _BAR_H * len(series)
        parts.append(f'<text class="group" x="{_LABEL_W - 8}" y="{y + block / 2 + 4:.1f}" text-anchor="end">'
                     f"{escape(group)}</text>")
        for name, value in series.items():
            color = _PALETTE[names.index(name) % len(_PALETTE)]
            w = max(0.0, min(1.0, value / top)) * span
            parts.append(f'<rect class="bar" x="{_LABEL_W}" y="{y + 1:.1f}" width="{w:.1f}" height="{_BAR_H - 2}" '
                         f'fill="{color}"><title>{escape(group)} / {escape(name)}: {_label(value, percent)}</title></rect>')
            parts.append(f'<text class="value" x="{_LABEL_W + w + 4:.1f}" y="{y + _BAR_H - 3:.1f}" font-size="11">'
                         f"{_label(value, percent)}</text>")
            y += _BAR_H
        y += _GAP
    return "\n".join([*parts, "</svg>"])


def _legend(names: list[str], width: int) -> list[str]:
    parts = ['<g class="legend">']
    x = float(_LABEL_W)
    for i, name in enumerate(names):
        color = _PALETTE[i % len(_PALETTE)]
        parts.append(f'<rect x="{x:.1f}" y="30" width="12" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 16:.1f}" y="39">{escape(name)}</text>')
        x += 28 + 7 * len(name)
    parts.append("</g>")
    return parts
