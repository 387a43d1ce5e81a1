"""Matplotlib token heatmaps (PNG files, TensorBoard images), in the colours of :mod:`bcos.viz.colors`."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from . import colors
from .heatmap import TokenHeatmap


def _plain(text: str) -> str:
    """``text`` shown literally: a ``$`` would otherwise start matplotlib's math mode."""
    return text.replace("$", r"\$")


def heatmap_figure(heatmaps: TokenHeatmap | Sequence[TokenHeatmap]) -> Figure:
    """One panel per heatmap, stacked: a ``rows x tokens`` grid of cells coloured by the row-normalised score,
    tokens along the bottom, row labels on the left, the title and :meth:`TokenHeatmap.summary` on top.

    Built without pyplot (no backend is selected, nothing global changes): save it with ``figure.savefig`` or
    hand it to ``SummaryWriter.add_figure``.
    """
    heatmaps = [heatmaps] if isinstance(heatmaps, TokenHeatmap) else list(heatmaps)
    if not heatmaps:
        raise ValueError("no heatmaps to draw")
    titles = ["\n".join(line for line in (heatmap.title, heatmap.summary()) if line) for heatmap in heatmaps]
    tokens = max(len(heatmap.tokens) for heatmap in heatmaps)
    characters = max(len(line) for title in titles for line in title.split("\n"))
    heights = [1.3 + 0.35 * len(heatmap.rows) for heatmap in heatmaps]
    figure = Figure(figsize=(max(5.0, 2.0 + 0.42 * tokens, 2.0 + 0.065 * characters), sum(heights)),
                    layout="constrained")
    axes = figure.subplots(len(heatmaps), 1, squeeze=False, height_ratios=heights)[:, 0]
    image = None
    for ax, heatmap, title in zip(axes, heatmaps, titles):
        grid = [colors.normalise(scores) for scores in heatmap.rows.values()]
        image = ax.imshow(grid, cmap=colors.colormap(), vmin=-1.0, vmax=1.0, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(heatmap.tokens)), [_plain(token) for token in heatmap.tokens], rotation=60,
                      ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_yticks(range(len(heatmap.rows)), [_plain(label) for label in heatmap.rows], fontsize=8)
        ax.set_title(_plain(title), fontsize=8, loc="left")
    figure.colorbar(image, ax=list(axes), fraction=0.03, pad=0.01, label="score / max |score| of the row")
    return figure


def write_png(heatmaps: TokenHeatmap | Sequence[TokenHeatmap], path: str | Path, dpi: int = 120) -> Path:
    """Draw :func:`heatmap_figure` into a PNG file at ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    heatmap_figure(heatmaps).savefig(path, dpi=dpi, format="png")
    return path
