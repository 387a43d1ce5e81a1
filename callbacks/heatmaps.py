"""Token heatmap figures for TensorBoard (one small function, so a shared renderer can replace it)."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from matplotlib.figure import Figure


def heatmap_figure(tokens: list[str], rows: Mapping[str, torch.Tensor], title: str = "") -> Figure:
    """One heatmap row per method: ``rows[name]`` holds ``[len(tokens)]`` scores, each row divided by its largest
    magnitude and drawn with a diverging colormap centred at 0 (red: for the explained class, blue: against).

    Built without pyplot (no backend is selected, nothing global changes); ``SummaryWriter.add_figure`` renders it.
    """
    values = torch.stack([scores.detach().float().cpu() for scores in rows.values()])
    values = values / values.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)
    figure = Figure(figsize=(1.5 + 0.42 * len(tokens), 1.2 + 0.38 * len(rows)), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(values.numpy(), cmap="RdBu_r", vmin=-1.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=8)
    axes.set_yticks(range(len(rows)), list(rows), fontsize=8)
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01, label="score / max |score|")
    return figure
