"""Small inline-SVG charts for the HTML report: pure functions from numbers to markup.

Hand-made rather than a plotting library so the page is one small self-contained file and the
core install needs nothing more. Every chart is 540x300 user units and scales with its container.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Mapping, Sequence

__all__ = ["bars", "decisions_over_time", "heatmap", "histogram", "nice_ticks"]

W, H = 540, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 28, 14, 40
COLORS = {"workers": "#2f855a", "judge": "#c05621", "fallback": "#9b2c2c"}
BAR = "#3e6fb0"


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `high` (steps of 1, 2 or 5 times a power of ten)."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(high / step - 1e-9) + 1)]


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == 0 else f"{value:.2g}"


def _svg(body: str, label: str, height: int = H) -> str:
    return (
        f'<svg viewBox="0 0 {W} {height}" width="100%" role="img" aria-label="{html.escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui,sans-serif" font-size="11">{body}</svg>'
    )


def _axes(x_ticks: Sequence[float], y_ticks: Sequence[float], x_label: str, y_label: str,
          x_names: Sequence[str] | None = None) -> str:  # fmt: skip
    """Gridlines, tick labels and axis titles for a plot area with the given tick values
    (`x_names` labels the x ticks instead of their values)."""
    parts = []
    for y in y_ticks:
        py = _py(y, y_ticks[-1])
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py:.1f}" y2="{py:.1f}" stroke="#e4e7eb"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end" fill="#52606d">{_fmt(y)}</text>')
    for n, x in enumerate(x_ticks):
        px, name = _px(x, x_ticks[-1]), x_names[n] if x_names else _fmt(x)
        parts.append(f'<text x="{px:.1f}" y="{H - BOTTOM + 15}" text-anchor="middle" fill="#52606d">{name}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" y2="{H - BOTTOM}" stroke="#7b8794"/>')
    parts.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 6}" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(
        f'<text transform="translate(13 {(TOP + H - BOTTOM) / 2}) rotate(-90)" text-anchor="middle">'
        f"{html.escape(y_label)}</text>"
    )
    return "".join(parts)


def _px(x: float, x_max: float) -> float:
    return LEFT + (W - LEFT - RIGHT) * (x / x_max if x_max else 0.0)


def _py(y: float, y_max: float) -> float:
    return H - BOTTOM - (H - TOP - BOTTOM) * (y / y_max if y_max else 0.0)


def _cell_color(value: float) -> str:
    """White (0) to deep blue (1), so high agreement reads as dark."""
    v = min(max(value, 0.0), 1.0)
    r, g, b = (round(255 + (t - 255) * v) for t in (35, 82, 150))
    return f"rgb({r},{g},{b})"


def heatmap(matrix: Mapping[str, Mapping[str, float]]) -> str:
    """A square heat map of a symmetric share matrix with the percentage in each cell."""
    names = list(matrix)
    n = max(len(names), 1)
    left, top, height = 110, 8, 360
    size = min((W - left - 10) / n, (height - top - 70) / n)
    parts = []
    for i, a in enumerate(names):
        y = top + i * size
        parts.append(f'<text x="{left - 6}" y="{y + size / 2 + 4:.1f}" text-anchor="end">{html.escape(a)}</text>')
        for j, b in enumerate(names):
            value = matrix[a][b]
            x = left + j * size
            ink = "#fff" if value > 0.55 else "#1f2933"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{size - 2:.1f}" height="{size - 2:.1f}" '
                f'fill="{_cell_color(value)}"><title>{html.escape(a)} vs {html.escape(b)}: {value:.3f}</title></rect>'
                f'<text x="{x + size / 2 - 1:.1f}" y="{y + size / 2 + 3:.1f}" text-anchor="middle" '
                f'fill="{ink}">{100 * value:.0f}%</text>'
            )
    for j, b in enumerate(names):
        x, y = left + j * size + size / 2, top + n * size + 6
        parts.append(
            f'<text transform="translate({x:.1f} {y:.1f}) rotate(35)" text-anchor="start">{html.escape(b)}</text>'
        )
    return _svg("".join(parts), "agreement matrix", height)


def decisions_over_time(decisions: Sequence[Sequence[object]]) -> str:
    """Cumulative decisions per `decided_by` against seconds since the pass began, one step line each."""
    points: dict[str, list[tuple[float, int]]] = {}
    counts: dict[str, int] = {}
    for t, by in decisions:
        key = str(by)
        counts[key] = counts.get(key, 0) + 1
        points.setdefault(key, [(0.0, 0)]).append((float(t), counts[key]))  # type: ignore[arg-type]
    x_ticks = nice_ticks(max((float(d[0]) for d in decisions), default=1.0))  # type: ignore[arg-type]
    y_ticks = nice_ticks(max(counts.values(), default=1))
    parts = [_axes(x_ticks, y_ticks, "seconds of cascade time (rounds laid end to end)", "items decided")]
    for n, (by, line) in enumerate(sorted(points.items())):
        # A step line: the count only changes at a decision, and a batch decides many at once.
        steps = [line[0]] + [p for prev, cur in itertools.pairwise(line) for p in ((cur[0], prev[1]), cur)]
        path = " ".join(f"{_px(t, x_ticks[-1]):.1f},{_py(c, y_ticks[-1]):.1f}" for t, c in steps)
        color = COLORS.get(by, "#52606d")
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(
            f'<rect x="{LEFT + 10}" y="{TOP + 6 + 16 * n}" width="10" height="10" fill="{color}"/>'
            f'<text x="{LEFT + 26}" y="{TOP + 15 + 16 * n}">{html.escape(by)} ({counts[by]})</text>'
        )
    return _svg("".join(parts), "decisions over time")


def histogram(values: Sequence[float], marks: Mapping[str, float], per_decade: int = 8) -> str:
    """A histogram of `values` (ms) on a log axis, with dashed lines at the p50/p95/p99 entries of
    `marks`. Log because a cascade's latencies are bimodal: the fast path in milliseconds, the
    judge's path in seconds; values under 1 ms count as 1 ms."""
    logs = [math.log10(max(v, 1.0)) for v in values] or [0.0]
    low, high = math.floor(min(logs)), max(math.ceil(max(logs)), math.floor(min(logs)) + 1)
    counts = [0] * ((high - low) * per_decade)
    for x in logs:
        counts[min(int((x - low) * per_decade), len(counts) - 1)] += 1
    x_ticks = [float(d) for d in range(high - low + 1)]
    names = [f"{10 ** (low + d):,}" for d in range(high - low + 1)]
    y_ticks = nice_ticks(max(counts, default=1))
    parts = [_axes(x_ticks, y_ticks, "end-to-end latency (ms, log scale)", "items", names)]
    for i, c in enumerate(counts):
        x0, x1 = _px(i / per_decade, x_ticks[-1]), _px((i + 1) / per_decade, x_ticks[-1])
        y = _py(c, y_ticks[-1])
        parts.append(f'<rect x="{x0 + 0.5:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
                     f'height="{H - BOTTOM - y:.1f}" fill="{BAR}"/>')  # fmt: skip
    for n, name in enumerate(("p50", "p95", "p99")):
        if name in marks:
            px = _px(math.log10(max(marks[name], 1.0)) - low, x_ticks[-1])
            # Labels near the right edge go left of their line so they stay inside the chart.
            anchor, dx = ("end", -3) if px > W - 110 else ("start", 3)
            parts.append(
                f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{H - BOTTOM}" stroke="#c05621" '
                f'stroke-dasharray="4 3"/><text x="{px + dx:.1f}" y="{TOP + 10 + 12 * n}" fill="#c05621" '
                f'text-anchor="{anchor}">{name} {marks[name]:,.0f} ms</text>'
            )
    return _svg("".join(parts), "latency histogram")


def bars(values: Mapping[str, float], unit: str) -> str:
    """Horizontal bars, one per named value, labelled with the value and `unit`."""
    names = list(values)
    high = max(values.values(), default=1.0)
    left, row = 120, 36.0
    height = int(20 + row * max(len(names), 1))
    scale = (W - left - 70) / high if high else 0.0
    parts = []
    for i, name in enumerate(names):
        y, length = 10 + i * row, values[name] * scale
        parts.append(
            f'<text x="{left - 6}" y="{y + row / 2 + 3:.1f}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{left}" y="{y + 4:.1f}" width="{max(length, 1):.1f}" height="{row - 10:.1f}" fill="{BAR}"/>'
            f'<text x="{left + length + 6:.1f}" y="{y + row / 2 + 3:.1f}">'
            f"{values[name]:,.{1 if values[name] >= 10 else 2}f} {html.escape(unit)}</text>"
        )
    return _svg("".join(parts), "bar chart", height)
