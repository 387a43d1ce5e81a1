"""TensorBoard heatmap figures of the faithfulness callback, drawn by the library's renderer (:mod:`bcos.viz`)."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from matplotlib.figure import Figure

from bcos.viz import TokenHeatmap
from bcos.viz import heatmap_figure as _draw


def heatmap_figure(tokens: list[str], rows: Mapping[str, torch.Tensor], title: str = "") -> Figure:
    """One heatmap row per method: ``rows[name]`` holds ``[len(tokens)]`` scores (see
    :func:`bcos.viz.heatmap_figure`; ``SummaryWriter.add_figure`` renders it)."""
    return _draw(TokenHeatmap(tokens, dict(rows), title))
