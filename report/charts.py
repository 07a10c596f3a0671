"""Inline SVG charts: adoption bars, the MX → STARTTLS → certificate → MTA-STS/DANE
funnel, and trend lines.  No scripts, no external references: every label is
passed through ``html.escape``, so a chart is safe to inline in the report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = [
    "FUNNEL_FILLS",
    "FUNNEL_STROKES",
    "FUNNEL_TEXT",
    "PAGE_BACKGROUND",
    "bar_chart",
    "contrast_ratio",
    "funnel_chart",
    "line_chart",
]

_PALETTE = ("#2b6cb0", "#2f855a", "#c05621", "#6b46c1", "#b7791f", "#c53030", "#319795", "#4a5568")
_FONT = 'font-family="system-ui, sans-serif" font-size="13"'

#: The funnel's labels sit on its bars, and beyond a narrow bar on the page: dark text on
#: light tints of the palette (outlined in the palette colour) keeps every label above
#: WCAG 2.x AA's 4.5:1 for normal text on either (12:1 or more here; white text on the
#: saturated palette was 3.5:1 on the yellow and teal bars).  A test computes the ratios.
FUNNEL_TEXT = "#1a202c"
PAGE_BACKGROUND = "#ffffff"
FUNNEL_FILLS = ("#bee3f8", "#c6f6d5", "#feebc8", "#e9d8fd", "#fefcbf", "#fed7d7", "#b2f5ea", "#e2e8f0")
FUNNEL_STROKES = _PALETTE


def _luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of ``#rrggbb``."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2.x contrast ratio (1-21) of two opaque ``#rrggbb`` colours."""
    light, dark = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def bar_chart(title: str, items: Sequence[tuple[str, float, str]], width: int = 760) -> str:
    """Horizontal bars of percentages: (label, percent 0-100, value text shown after the bar)."""
    label_w, bar_w, row_h = 260, width - 260 - 150, 28
    height = row_h * len(items) + 10
    body: list[str] = []
    for i, (label, pct, value) in enumerate(items):
        y = 5 + i * row_h
        length = max(0.0, min(100.0, pct)) * bar_w / 100
        body.append(
            f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end" {_FONT}>{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{bar_w}" height="{row_h - 8}" fill="#edf2f7"/>'
            f'<rect x="{label_w}" y="{y + 4}" width="{length:.1f}" height="{row_h - 8}" '
            f'fill="{_PALETTE[i % len(_PALETTE)]}"/>'
            f'<text x="{label_w + bar_w + 8}" y="{y + 18}" {_FONT}>{escape(value)}</text>'
        )
    return _svg(width, height, title, body)


def funnel_chart(title: str, steps: Sequence[tuple[str, int]], width: int = 760) -> str:
    """Centred bars, each as wide as its count relative to the first step."""
    row_h = 44
    height = row_h * len(steps) + 10
    top = steps[0][1] if steps and steps[0][1] else 1
    usable = width - 40
    body: list[str] = []
    for i, (label, count) in enumerate(steps):
        y = 5 + i * row_h
        w = max(2.0, usable * min(count, top) / top)
        x = (width - w) / 2
        share = 100 * count / top if steps[0][1] else 0.0
        body.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" rx="4" '
            f'fill="{FUNNEL_FILLS[i % len(FUNNEL_FILLS)]}" '
            f'stroke="{FUNNEL_STROKES[i % len(FUNNEL_STROKES)]}" stroke-width="1.5"/>'
            f'<text x="{width / 2}" y="{y + 25}" text-anchor="middle" {_FONT} fill="{FUNNEL_TEXT}">'
            f"{escape(label)}: {count:,} ({share:.1f}%)</text>"
        )
    return _svg(width, height, title, body)


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    width: int = 760,
    height: int = 340,
    unit: str = "%",
) -> str:
    """Values over dated runs, one line per series: percent (``unit`` "%", 0-100) or counts
    (``unit`` ""), the axis auto-scaled to the largest value."""
    left, right, top, bottom = 50, 200, 15, 45
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    highest = max(values, default=1.0) * 1.1
    y_max = max(1.0, min(100.0, highest)) if unit == "%" else max(4.0, float(math.ceil(highest)))
    n = len(x_labels)

    def x_at(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y_at(v: float) -> float:
        return top + plot_h * (1 - v / y_max)

    body = [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#f7fafc" stroke="#cbd5e0"/>'
    ]
    for k in range(5):
        v = y_max * k / 4
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y_at(v):.1f}" y2="{y_at(v):.1f}" stroke="#e2e8f0"/>'
            f'<text x="{left - 6}" y="{y_at(v) + 4:.1f}" text-anchor="end" {_FONT}>'
            f"{v:.0f}{escape(unit)}</text>"
        )
    step = max(1, n // 8)
    for i, label in enumerate(x_labels):
        if i % step == 0 or i == n - 1:
            body.append(
                f'<text x="{x_at(i):.1f}" y="{top + plot_h + 18}" text-anchor="middle" {_FONT}>'
                f"{escape(label)}</text>"
            )
    for s, (name, vs) in enumerate(series):
        colour = _PALETTE[s % len(_PALETTE)]
        points = [(x_at(i), y_at(v)) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points]
        ly = top + 14 + s * 20
        body.append(
            f'<rect x="{left + plot_w + 12}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{left + plot_w + 30}" y="{ly}" {_FONT}>{escape(name)}</text>'
        )
    return _svg(width, height, title, body)
