"""The diverging colour scale shared by the HTML and the matplotlib heatmaps.

Scores are divided by the largest magnitude of their row, so each row spans ``[-1, 1]``: positive scores (for the
explained target) are red, negative ones (against it) blue, zero is white; the colour is linear in RGB between
these three anchors, in both renderers.
"""
from __future__ import annotations

from collections.abc import Sequence

from matplotlib.colors import LinearSegmentedColormap

RGB = tuple[int, int, int]

NEGATIVE: RGB = (33, 102, 172)
NEUTRAL: RGB = (255, 255, 255)
POSITIVE: RGB = (178, 24, 43)


def normalise(scores: Sequence[float]) -> list[float]:
    """``scores`` divided by their largest magnitude (all zeros stay zeros): values in ``[-1, 1]``."""
    scale = max((abs(score) for score in scores), default=0.0)
    return [score / scale if scale > 0 else 0.0 for score in scores]


def rgb(value: float) -> RGB:
    """The colour of a normalised score ``value`` in ``[-1, 1]`` (clipped)."""
    value = max(-1.0, min(1.0, value))
    anchor = POSITIVE if value >= 0 else NEGATIVE
    weight = abs(value)
    return tuple(round(n + (a - n) * weight) for n, a in zip(NEUTRAL, anchor))


def css(value: float) -> str:
    """``rgb(r, g, b)`` CSS colour of a normalised score."""
    return "rgb({}, {}, {})".format(*rgb(value))


def colormap() -> LinearSegmentedColormap:
    """The same scale as a matplotlib colormap over ``[-1, 1]`` (use ``vmin=-1, vmax=1``)."""
    anchors = [tuple(channel / 255 for channel in colour) for colour in (NEGATIVE, NEUTRAL, POSITIVE)]
    return LinearSegmentedColormap.from_list("bcos_diverging", anchors)
