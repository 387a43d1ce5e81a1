"""Standalone HTML token heatmaps: no JavaScript, no external files; every string is HTML-escaped.

Each heatmap is a table: the tokens once in its header, then one row of coloured cells per method or class
(colours from :mod:`bcos.viz.colors`, normalised per row; hovering a cell shows its raw score).
"""
from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from . import colors

if TYPE_CHECKING:  # heatmap.py imports this module to render TokenHeatmap inline
    from .heatmap import TokenHeatmap

STYLE = """<style>
.bcos-heatmap { font-family: system-ui, sans-serif; margin: 0 0 1.5em 0; }
.bcos-heatmap h2 { font-size: 1em; margin: 0 0 0.2em 0; }
.bcos-heatmap p { font-size: 0.85em; color: #444; margin: 0 0 0.4em 0; }
.bcos-heatmap .bcos-scroll { overflow-x: auto; }
.bcos-heatmap table { border-collapse: collapse; }
.bcos-heatmap th { font-weight: normal; font-size: 0.85em; padding: 2px 4px; white-space: pre; }
.bcos-heatmap th.bcos-row { text-align: right; color: #444; }
.bcos-heatmap td { height: 1.4em; min-width: 1.2em; border: 1px solid #eee; }
</style>"""


def _section(heatmap: TokenHeatmap) -> str:
    header = "".join(f'<th class="bcos-token">{escape(token)}</th>' for token in heatmap.tokens)
    body = []
    for label, scores in heatmap.rows.items():
        cells = "".join(f'<td style="background: {colors.css(value)}" data-score="{score!r}" title="{score:+.4g}"></td>'
                        for score, value in zip(scores, colors.normalise(scores)))
        body.append(f'<tr><th class="bcos-row">{escape(label)}</th>{cells}</tr>')
    title = f"<h2>{escape(heatmap.title)}</h2>" if heatmap.title else ""
    summary = f"<p>{escape(heatmap.summary())}</p>" if heatmap.summary() else ""
    return (f'<section class="bcos-heatmap">{title}{summary}<div class="bcos-scroll"><table><thead><tr><th></th>'
            f'{header}</tr></thead><tbody>{"".join(body)}</tbody></table></div></section>')


def heatmap_fragment(heatmaps: Sequence[TokenHeatmap]) -> str:
    """The heatmaps as an HTML fragment with its own ``<style>`` (for notebooks or embedding in a page)."""
    return STYLE + "\n" + "\n".join(_section(heatmap) for heatmap in heatmaps)


def heatmap_document(heatmaps: Sequence[TokenHeatmap], title: str = "Explanations") -> str:
    """A standalone HTML page of the heatmaps, with a legend of the colours."""
    legend = (f'<p class="bcos-legend">Colours per row, scaled by the row\'s largest |score|: '
              f'<span style="background: {colors.css(1.0)}; color: #fff">&nbsp;for the explained target&nbsp;</span> '
              f'<span style="background: {colors.css(-1.0)}; color: #fff">&nbsp;against it&nbsp;</span>; '
              "hover over a cell for its score.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>\n{STYLE}'
            f"</head>\n<body>\n<h1>{escape(title)}</h1>\n{legend}\n"
            + "\n".join(_section(heatmap) for heatmap in heatmaps) + "\n</body></html>\n")


def write_html(heatmaps: Sequence[TokenHeatmap], path: str | Path, title: str = "Explanations") -> Path:
    """Write :func:`heatmap_document` to ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(heatmap_document(heatmaps, title), encoding="utf-8")
    return path
