"""Log-log curves (value against size) as text for the terminal and as inline SVG for HTML.

``curves`` maps a series name to its points ``[(size, value), …]``; points with a value of
zero or less cannot be drawn on a log scale and are left out."""

from __future__ import annotations

import html
import math

MARKS = "●▲■◆○△□◇"
COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"]


def _log_points(curves: dict[str, list[tuple[float, float]]]):
    pts = {name: [(math.log10(x), math.log10(y)) for x, y in points if x > 0 and y > 0]
           for name, points in curves.items()}
    pts = {k: v for k, v in pts.items() if v}
    xs = [x for v in pts.values() for x, _ in v]
    ys = [y for v in pts.values() for _, y in v]
    if not xs:
        return pts, (0, 1), (0, 1)
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    return pts, (x0, x1 if x1 > x0 else x0 + 1), (y0, y1 if y1 > y0 else y0 + 1)


def _fmt(exp10: float) -> str:
    from .units import human
    return human(round(10 ** exp10))


def loglog_text(curves: dict[str, list[tuple[float, float]]], width: int = 64, height: int = 16) -> str:
    """A character plot: one mark per series, axes labelled with the extreme values."""
    pts, (x0, x1), (y0, y1) = _log_points(curves)
    grid = [[" "] * width for _ in range(height)]
    for k, (name, points) in enumerate(pts.items()):
        mark = MARKS[k % len(MARKS)]
        for x, y in points:
            col = round((x - x0) / (x1 - x0) * (width - 1))
            row = height - 1 - round((y - y0) / (y1 - y0) * (height - 1))
            grid[row][col] = mark
    top, bottom = _fmt(y1), _fmt(y0)
    pad = max(len(top), len(bottom))
    lines = []
    for r, cells in enumerate(grid):
        label = top if r == 0 else bottom if r == height - 1 else ""
        lines.append(f"{label:>{pad}} │{''.join(cells)}")
    lines.append(" " * pad + " └" + "─" * width)
    left, right = _fmt(x0), _fmt(x1)
    lines.append(" " * (pad + 2) + left + " " * max(1, width - len(left) - len(right)) + right)
    lines.append(" " * (pad + 2) + "   ".join(f"{MARKS[k % len(MARKS)]} {name}" for k, name in enumerate(pts))
                 + "   (log-log)")
    return "\n".join(lines)


def loglog_svg(curves: dict[str, list[tuple[float, float]]], width: int = 640, height: int = 360,
               x_label: str = "size") -> str:
    pts, (x0, x1), (y0, y1) = _log_points(curves)
    left, right, top, bottom = 70, 150, 15, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + ph - (y - y0) / (y1 - y0) * ph

    out = [f'<svg class="plot" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for e in range(math.floor(y0), math.ceil(y1) + 1):
        if y0 <= e <= y1:
            out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{sy(e):.1f}" y2="{sy(e):.1f}"/>'
                       f'<text x="{left - 6}" y="{sy(e) + 4:.1f}" text-anchor="end">{_fmt(e)}</text>')
    xticks = sorted({x for v in pts.values() for x, _ in v})
    for x in xticks:
        out.append(f'<text x="{sx(x):.1f}" y="{top + ph + 16}" text-anchor="middle">{_fmt(x)}</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}"/>'
               f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>'
               f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">{html.escape(x_label)} (log)</text>')
    for k, (name, points) in enumerate(pts.items()):
        color = COLORS[k % len(COLORS)]
        path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(points))
        out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in points:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>')
        out.append(_legend_entry(k, name, color, left + pw + 10, top))
    out.append("</svg>")
    return "".join(out)


def _legend_entry(k: int, name: str, color: str, x: float, top: float) -> str:
    """The k-th legend entry of a plot: a colour swatch and the (escaped) series name."""
    y = top + 14 + 16 * k
    return (f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{y}">{html.escape(name)}</text>')




def _reduced(values: list[int], points: int) -> list[int]:
    bucket = max(1, -(-len(values) // points))
    return [max(values[i:i + bucket]) for i in range(0, len(values), bucket)]


def timeline_panels_svg(live: list[int], activations: list[int], peak: int | None, width: int = 900,
                        height: int = 150, points: int = 900) -> str:
    """The memory timeline as two panels over the op index: live bytes with the peak marked, and
    below it the activations on an axis of their own (both from 0; each bucket keeps its max)."""
    from .units import human

    n = len(live)
    left, right, gap, bottom = 70, 20, 26, 30
    pw = width - left - right
    total_h = 2 * height + gap + bottom
    out = [f'<svg class="plot timeline" role="img" width="{width}" height="{total_h}" viewBox="0 0 {width} {total_h}">']
    panels = (("live bytes", live, COLORS[0], 0), ("activations (own axis)", activations, COLORS[1], height + gap))
    for name, values, color, y0 in panels:
        top = max(values, default=0) or 1
        ph = height - 18
        base = y0 + 14 + ph
        out.append(f'<text class="panel-title" x="{left}" y="{y0 + 10}">{html.escape(name)}</text>')
        for frac in (0, 0.5, 1):
            y = base - frac * ph
            out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
                       f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{human(round(top * frac))}B</text>')
        if values:
            reduced = _reduced(values, points)
            m = max(1, len(reduced) - 1)
            path = " ".join(f"{'M' if i == 0 else 'L'}{left + i / m * pw:.1f},{base - v / top * ph:.1f}"
                            for i, v in enumerate(reduced))
            out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        if y0 == 0 and peak is not None and 0 <= peak < n:
            x = left + (peak / max(1, n - 1)) * pw
            y = base - live[peak] / top * ph
            out.append(f'<circle class="peak" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#e15759"/>'
                       f'<line class="peak" x1="{x:.1f}" x2="{x:.1f}" y1="{y0 + 14}" y2="{total_h - bottom}" '
                       f'stroke="#e15759" stroke-dasharray="3,3"/>'
                       f'<text class="peak-label" x="{min(x + 6, left + pw - 150):.1f}" y="{y0 + 24}">peak '
                       f'{human(live[peak])}B, op {peak:,}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{total_h - 6}" text-anchor="middle">op index (0 … {max(n - 1, 0):,})'
               '</text></svg>')
    return "".join(out)


def search_svg(traces: list[tuple[int, int, bool]], budget: int | None, curve: list | None, variable: str,
               width: int = 640, height: int = 300) -> str:
    """A search's traces (bytes against the batch or context; ● fits, ✕ does not), the budget as
    a line, and the fitted polynomial through ``curve`` (its points) only when given — the
    caller gives it only where every trace lies on it."""
    from fractions import Fraction

    from .units import human

    xs = [x for x, _, _ in traces]
    ys = [y for _, y, _ in traces] + ([budget] if budget else [])
    x0, x1 = 0, max(xs) * 1.05 or 1
    y1 = max(ys) * 1.08 or 1
    left, right, top, bottom = 80, 20, 15, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + ph - y / y1 * ph

    out = [f'<svg class="plot search" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
           (f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}"/>'
            f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>')]
    for frac in (0, 0.5, 1):
        out.append(f'<text x="{left - 6}" y="{sy(frac * y1) + 4:.1f}" text-anchor="end">{human(round(frac * y1))}B</text>'
                   f'<text x="{sx(frac * x1):.1f}" y="{top + ph + 16}" text-anchor="middle">{human(round(frac * x1))}'
                   '</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">{html.escape(variable)}</text>')
    if budget:
        out.append(f'<line class="budget" x1="{left}" x2="{left + pw}" y1="{sy(budget):.1f}" y2="{sy(budget):.1f}" '
                   f'stroke="#59a14f" stroke-dasharray="5,3"/><text x="{left + 4}" y="{sy(budget) - 4:.1f}">budget '
                   f'{human(budget)}B</text>')
    if curve:
        pts = [(Fraction(x), Fraction(y)) for x, y in curve]

        def f(x):
            total = Fraction(0)
            for i, (xi, yi) in enumerate(pts):
                term = yi
                for j, (xj, _) in enumerate(pts):
                    if j != i:
                        term *= (x - xj) / (xi - xj)
                total += term
            return float(total)
        samples = [x1 * k / 64 for k in range(65)]
        path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(max(f(Fraction(x)), 0)):.1f}"
                        for i, x in enumerate(samples))
        out.append(f'<path class="fit" d="{path}" fill="none" stroke="{COLORS[0]}" stroke-width="1.5"/>')
    for x, y, fits in traces:
        if fits:
            out.append(f'<circle class="trace fits" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{COLORS[0]}">'
                       f'<title>{x:,}: {y:,} B, fits</title></circle>')
        else:
            out.append(f'<text class="trace over" x="{sx(x):.1f}" y="{sy(y) + 4:.1f}" text-anchor="middle" '
                       f'fill="{COLORS[2]}">✕<title>{x:,}: {y:,} B, does not fit</title></text>')
    out.append("</svg>")
    return "".join(out)


__all__ = ["loglog_svg", "loglog_text", "search_svg", "timeline_panels_svg"]
