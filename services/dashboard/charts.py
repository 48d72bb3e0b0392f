"""Inline SVG charts (pure functions returning markup).

Why hand-written SVG rather than a vendored JS library: the pages are re-rendered on the server on
every change event and swapped in whole, under a nonce-only Content-Security-Policy; SVG built
here needs no script, no build step and no third-party asset, prints and screenshots exactly as
served, and keeps every chart next to a data table for screen readers. Series differ by dash
pattern and marker as well as colour, and are named in a legend, so they read without colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from itertools import count
from typing import Final

COLOURS: Final = ("#1f5fbf", "#b8461b", "#2e7d32", "#6a3d9a", "#8a6d00")
DASHES: Final = ("", "6 3", "2 3", "8 3 2 3", "1 2")
_ids = count(1)


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class Marker:
    """A labelled point, e.g. the KS point; ``to`` draws a segment from ``at`` to it."""

    label: str
    at: tuple[float, float]
    to: tuple[float, float] | None = None


@dataclass(frozen=True)
class Axes:
    x_label: str
    y_label: str
    x_range: tuple[float, float] | None = None  # default: the data's
    y_range: tuple[float, float] | None = None
    diagonal: bool = False  # y = x, the chance line of ROC and gain charts
    x_integer: bool = False  # ticks on whole numbers only (iterations)
    markers: list[Marker] = field(default_factory=list)


def _ticks(lo: float, hi: float, n: int = 5, *, integer: bool = False) -> list[float]:
    ticks = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    return sorted({float(round(t)) for t in ticks}) if integer else ticks


def _range(values: list[float], fixed: tuple[float, float] | None) -> tuple[float, float]:
    if fixed is not None:
        return fixed
    lo, hi = min(values), max(values)
    return (lo - 0.5, hi + 0.5) if hi == lo else (lo, hi)


def line_chart(
    series: Sequence[Series],
    axes: Axes,
    *,
    title: str,
    chart_id: str,
    width: int = 440,
    height: int = 300,
) -> str:
    """An SVG line chart: ``series`` over ``axes``, with a legend; no data gives a note."""
    lines = [s for s in series if s.points]
    if not lines:
        return f'<p class="muted">No {escape(title)} reported yet.</p>'
    xs = [x for s in lines for x, _ in s.points]
    ys = [y for s in lines for _, y in s.points]
    x0, x1 = _range(xs, axes.x_range)
    y0, y1 = _range(ys, axes.y_range)
    left, right, top, bottom = 58, 14, 14, 44

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    parts: list[str] = []
    for t in _ticks(x0, x1, integer=axes.x_integer):
        parts.append(
            f'<line x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" y2="{height - bottom}" '
            f'class="grid"/><text x="{sx(t):.1f}" y="{height - bottom + 14}" '
            f'text-anchor="middle">{t:.3g}</text>'
        )
    for t in _ticks(y0, y1):
        parts.append(
            f'<line x1="{left}" y1="{sy(t):.1f}" x2="{width - right}" y2="{sy(t):.1f}" '
            f'class="grid"/><text x="{left - 5}" y="{sy(t) + 4:.1f}" '
            f'text-anchor="end">{t:.3g}</text>'
        )
    parts.append(
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 6}" text-anchor="middle" '
        f'class="axis-label">{escape(axes.x_label)}</text>'
        f'<text transform="translate(14 {(top + height - bottom) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle" class="axis-label">{escape(axes.y_label)}</text>'
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" class="frame"/>'
    )
    if axes.diagonal:
        lo, hi = max(x0, y0), min(x1, y1)
        parts.append(
            f'<line x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" y2="{sy(hi):.1f}" '
            'class="chance"/>'
        )
    legend: list[str] = []
    for i, s in enumerate(lines):
        colour, dash = COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.points)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash_attr} '
            f'points="{coords}" data-series="{escape(s.label)}"/>'
        )
        legend.append(
            f'<li><svg width="28" height="10" aria-hidden="true"><line x1="0" y1="5" x2="28" '
            f'y2="5" stroke="{colour}" stroke-width="2"{dash_attr}/></svg> '
            f"{escape(s.label)}</li>"
        )
    for m in axes.markers:
        if m.to is not None:
            parts.append(
                f'<line x1="{sx(m.at[0]):.1f}" y1="{sy(m.at[1]):.1f}" x2="{sx(m.to[0]):.1f}" '
                f'y2="{sy(m.to[1]):.1f}" class="marker-line"/>'
            )
        end = m.to or m.at
        parts.append(
            f'<circle cx="{sx(end[0]):.1f}" cy="{sy(end[1]):.1f}" r="4" class="marker"/>'
            f'<text x="{min(sx(end[0]) + 7, width - right - 4):.1f}" y="{sy(end[1]) + 14:.1f}" '
            f'class="marker-label">{escape(m.label)}</text>'
        )
    uid = f"{chart_id}-{next(_ids)}"
    desc = (
        f"{len(lines)} series; {axes.x_label} from {min(xs):.4g} to {max(xs):.4g}, "
        f"{axes.y_label} from {min(ys):.4g} to {max(ys):.4g}. "
        + " ".join(m.label + "." for m in axes.markers)
    )
    return f"""<figure class="chart" id="{escape(chart_id)}">
<svg role="img" aria-labelledby="{uid}-t {uid}-d" width="{width}" height="{height}"
 viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">
<title id="{uid}-t">{escape(title)}</title><desc id="{uid}-d">{escape(desc)}</desc>
{"".join(parts)}
</svg>
<figcaption>{escape(title)}<ul class="legend">{"".join(legend)}</ul></figcaption>
</figure>"""


def bar_chart(
    bars: Sequence[tuple[str, float]], *, title: str, chart_id: str, width: int = 440
) -> str:
    """Horizontal bars (negative values to the left of zero), each labelled with its value."""
    if not bars:
        return f'<p class="muted">No {escape(title)} reported.</p>'
    row, label_w, value_w = 20, 130, 60
    height = row * len(bars) + 10
    lo = min(0.0, *(v for _, v in bars))
    hi = max(0.0, *(v for _, v in bars))
    span = (hi - lo) or 1.0
    plot = width - label_w - value_w

    def sx(v: float) -> float:
        return label_w + (v - lo) / span * plot

    parts = [f'<line x1="{sx(0):.1f}" y1="0" x2="{sx(0):.1f}" y2="{height}" class="axis"/>']
    for i, (name, value) in enumerate(bars):
        y = 5 + i * row
        a, b = sorted((sx(0), sx(value)))
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{escape(name[:18])}</text>'
            f'<rect x="{a:.1f}" y="{y + 2}" width="{max(b - a, 1):.1f}" height="{row - 6}" '
            f'fill="{COLOURS[0] if value >= 0 else COLOURS[1]}"/>'
            f'<text x="{width - value_w + 4}" y="{y + 13}">{value:.4g}</text>'
        )
    uid = f"{chart_id}-{next(_ids)}"
    return f"""<figure class="chart" id="{escape(chart_id)}">
<svg role="img" aria-labelledby="{uid}-t" width="{width}" height="{height}"
 viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">
<title id="{uid}-t">{escape(title)}</title>{"".join(parts)}
</svg><figcaption>{escape(title)}</figcaption></figure>"""
