"""Small SVG line charts drawn on the server (no script, every text escaped)."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from typing import Any


def line_chart(points: list[dict[str, Any]], key: str, *, title: str, unit: str = "", width: int = 560,
               height: int = 180, percent: bool = False) -> str:
    """``points`` (dicts with ``at``, epoch seconds, and ``key``) as an inline SVG line chart with marked points."""
    values = [(p["at"], p[key]) for p in points if isinstance(p.get(key), (int, float))]
    label = escape(title)
    if not values:
        return (f'<svg class="chart" role="img" aria-label="{label}: no data" width="{width}" height="{height}">'
                f'<text x="10" y="20">{label}: no data</text></svg>')
    left, right, top, bottom = 60, 12, 24, 26
    xs, ys = [v[0] for v in values], [float(v[1]) for v in values]
    x0, x1 = min(xs), max(xs)
    y0, y1 = 0.0, max(ys) or 1.0
    y1 *= 1.1

    def sx(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1.0) * (width - left - right) if x1 > x0 else (left + width - right) / 2

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    def fmt(y: float) -> str:
        return f"{y * 100:.1f}%" if percent else f"{y:.4g}{unit}"

    def clock(x: float) -> str:
        return datetime.fromtimestamp(x, tz=timezone.utc).strftime("%H:%M:%S")

    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(zip(xs, ys)))
    marks = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3"><title>{escape(clock(x))} UTC: '
                    f'{escape(fmt(y))}</title></circle>' for x, y in zip(xs, ys))
    axes = (f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" class="axis"/>'
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" class="axis"/>'
            f'<text x="{left - 4}" y="{sy(y1 / 1.1) + 4:.1f}" text-anchor="end">{escape(fmt(y1 / 1.1))}</text>'
            f'<text x="{left - 4}" y="{height - bottom + 4}" text-anchor="end">{escape(fmt(0.0))}</text>'
            f'<text x="{left}" y="{height - 8}">{escape(clock(x0))}</text>'
            f'<text x="{width - right}" y="{height - 8}" text-anchor="end">{escape(clock(x1))} UTC</text>')
    return (f'<svg class="chart" role="img" aria-label="{label}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><text x="{left}" y="14" class="title">{label}</text>{axes}'
            f'<path d="{path}" class="line"/>{marks}</svg>')
