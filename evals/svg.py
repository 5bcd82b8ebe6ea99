"""A bar chart with confidence-interval whiskers as a self-contained SVG string (no plotting
library needed, so the HTML report embeds it inline)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

COLORS = {"oracle": "#1f77b4", "baseline": "#2ca02c", "control": "#d62728", "ablation": "#9467bd"}


def bar_chart(
    names: Sequence[str],
    values: Sequence[float],
    los: Sequence[float],
    his: Sequence[float],
    title: str,
    kinds: Sequence[str] | None = None,
    reference: float | None = None,
    reference_label: str = "majority",
    ylabel: str = "accuracy",
) -> str:
    """Vertical bars (value) with whiskers [lo, hi] on a 0..1 axis; NaNs draw no bar.

    ``reference`` draws a dashed horizontal line (for example the majority-class rate).
    """
    n = len(names)
    if not n == len(values) == len(los) == len(his):
        raise ValueError("names, values, los and his must have the same length")
    kinds = list(kinds) if kinds is not None else ["oracle"] * n
    bar_w, gap, left, top, height, bottom = 46, 18, 48, 30, 200, 90
    width = left + n * (bar_w + gap) + gap
    total_h = top + height + bottom

    def y(v: float) -> float:
        return top + height * (1 - max(0.0, min(1.0, v)))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
        f'viewBox="0 0 {width} {total_h}" font-family="sans-serif" font-size="11">',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<text x="12" y="{top + height / 2}" transform="rotate(-90 12 {top + height / 2})" '
        f'text-anchor="middle">{escape(ylabel)}</text>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{left - 4}" x2="{width - gap / 2}" y1="{y(tick)}" y2="{y(tick)}" '
            f'stroke="#ddd"/><text x="{left - 6}" y="{y(tick) + 4}" text-anchor="end">'
            f"{tick:.2f}</text>"
        )
    for i, (name, v, lo, hi, kind) in enumerate(zip(names, values, los, his, kinds, strict=True)):
        x = left + gap + i * (bar_w + gap)
        cx = x + bar_w / 2
        if not math.isnan(v):
            color = COLORS.get(kind, "#7f7f7f")
            parts.append(
                f'<rect x="{x}" y="{y(v)}" width="{bar_w}" height="{top + height - y(v)}" '
                f'fill="{color}"><title>{escape(name)}: {v:.3f} [{lo:.3f}, {hi:.3f}]</title></rect>'
            )
            parts.append(
                f'<line x1="{cx}" x2="{cx}" y1="{y(lo)}" y2="{y(hi)}" stroke="black"/>'
                f'<line x1="{cx - 6}" x2="{cx + 6}" y1="{y(lo)}" y2="{y(lo)}" stroke="black"/>'
                f'<line x1="{cx - 6}" x2="{cx + 6}" y1="{y(hi)}" y2="{y(hi)}" stroke="black"/>'
            )
        ty = top + height + 10
        parts.append(
            f'<text x="{cx}" y="{ty}" transform="rotate(40 {cx} {ty})">{escape(name)}</text>'
        )
    if reference is not None and not math.isnan(reference):
        parts.append(
            f'<line x1="{left}" x2="{width - gap / 2}" y1="{y(reference)}" y2="{y(reference)}" '
            f'stroke="#555" stroke-dasharray="5,4"/><text x="{width - gap / 2}" '
            f'y="{y(reference) - 3}" text-anchor="end" fill="#555">{escape(reference_label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
) -> str:
    """Lines of (x, y) points on 0..1 axes, one colour per series, with a legend; ``diagonal``
    draws y = x (perfect calibration) dashed. Used for reliability diagrams and accuracy
    against coverage."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    left, top, size, bottom = 48, 30, 220, 70
    width, total_h = left + size + 150, top + size + bottom

    def px(v: float) -> float:
        return left + size * max(0.0, min(1.0, v))

    def py(v: float) -> float:
        return top + size * (1 - max(0.0, min(1.0, v)))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
        f'viewBox="0 0 {width} {total_h}" font-family="sans-serif" font-size="11">',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<text x="{left + size / 2}" y="{top + size + 34}" text-anchor="middle">'
        f"{escape(xlabel)}</text>",
        f'<text x="12" y="{top + size / 2}" transform="rotate(-90 12 {top + size / 2})" '
        f'text-anchor="middle">{escape(ylabel)}</text>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{left}" x2="{left + size}" y1="{py(tick)}" y2="{py(tick)}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{py(tick) + 4}" text-anchor="end">{tick:.2f}</text>'
            f'<text x="{px(tick)}" y="{top + size + 16}" text-anchor="middle">{tick:.2f}</text>'
        )
    if diagonal:
        parts.append(
            f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#888" '
            'stroke-dasharray="5,4"/>'
        )
    for k, (name, points) in enumerate(series.items()):
        color = palette[k % len(palette)]
        pts = [(x, y) for x, y in points if not (math.isnan(x) or math.isnan(y))]
        if pts:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
            for x, y in pts:
                parts.append(
                    f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}">'
                    f"<title>{escape(name)}: ({x:.3f}, {y:.3f})</title></circle>"
                )
        ly = top + 14 + 16 * k
        parts.append(
            f'<line x1="{left + size + 12}" x2="{left + size + 30}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{color}" stroke-width="2"/><text x="{left + size + 34}" y="{ly}">'
            f"{escape(name)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
