"""Small charts drawn for the report itself, returned as PNG bytes to embed (never written as files).

`matplotlib.figure.Figure` is used directly rather than pyplot: no global figure state, no backend, and
nothing left open when a report is built inside a long-lived process such as a server.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

ACCENT = "#4f46e5"
MUTED = "#64748b"
GRID = "#e2e8f0"
MAX_BARS = 30


def _style(axis) -> None:  # noqa: ANN001
    for side in ("top", "right"):
        axis.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        axis.spines[side].set_color(GRID)
    axis.tick_params(colors=MUTED, labelsize=8)
    axis.xaxis.label.set_color(MUTED)
    axis.yaxis.label.set_color(MUTED)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def class_balance(counts: Mapping[str, float]) -> bytes:
    """Horizontal bars of training rows per class, largest first, so imbalance is visible at a glance."""
    items = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:MAX_BARS]
    names = [str(name) for name, _ in items][::-1]
    values = [float(value) for _, value in items][::-1]
    figure = Figure(figsize=(4.6, 0.32 * len(items) + 0.7))
    axis = figure.subplots()
    bars = axis.barh(names, values, color=ACCENT, height=0.62)
    top = max(values) if values else 1.0
    for bar, value in zip(bars, values, strict=True):
        axis.text(bar.get_width() + top * 0.015, bar.get_y() + bar.get_height() / 2, f"{value:,.0f}",
                  va="center", fontsize=8, color=MUTED)
    axis.set_xlim(0, top * 1.15)
    axis.set_xlabel("training rows")
    axis.grid(axis="x", color=GRID, linewidth=0.8)
    axis.set_axisbelow(True)
    _style(axis)
    return _png(figure)


def predicted_vs_true(truth: Sequence[float], predicted: Sequence[float]) -> bytes:
    """Regression scatter with the identity line: where the model under- or over-shoots, and by how much."""
    figure = Figure(figsize=(4.4, 4.0))
    axis = figure.subplots()
    axis.scatter(truth, predicted, s=14, alpha=0.6, color=ACCENT, edgecolors="none")
    low = min(min(truth), min(predicted))
    high = max(max(truth), max(predicted))
    pad = (high - low) * 0.05 or 1.0
    axis.plot([low - pad, high + pad], [low - pad, high + pad], color=MUTED, linewidth=1, linestyle="--")
    axis.set_xlim(low - pad, high + pad)
    axis.set_ylim(low - pad, high + pad)
    axis.set_xlabel("true value")
    axis.set_ylabel("predicted value")
    axis.grid(color=GRID, linewidth=0.8)
    axis.set_axisbelow(True)
    _style(axis)
    return _png(figure)
