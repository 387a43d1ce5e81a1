"""The analysis report: one standalone HTML page (every text escaped, no JavaScript, the bar charts as PNGs embedded
in base64) and each table as a CSV file next to it."""
from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..viz.figure import _plain

_STYLE = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;color:#222}"
          "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px}"
          "td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}")


@dataclass
class Section:
    """A part of the report: a heading, a short text, charts (PNG bytes) and tables (each also written as
    ``<name>.csv``)."""

    heading: str
    text: str = ""
    charts: list[bytes] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def bar_chart(labels: list[str], values: list[float], title: str, xlabel: str) -> bytes:
    """A horizontal bar chart (first label on top) as PNG bytes; positive bars red, negative blue."""
    figure = Figure(figsize=(6.0, 0.8 + 0.28 * max(len(labels), 1)), layout="constrained")
    ax = figure.subplots()
    positions = np.arange(len(labels))[::-1]
    ax.barh(positions, values, color=["#c0392b" if value >= 0 else "#2e6fbd" for value in values])
    ax.set_yticks(positions, [_plain(label) for label in labels], fontsize=8)
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.set_title(_plain(title), fontsize=9, loc="left")
    ax.set_xlabel(xlabel, fontsize=8)
    return _png(figure)


def grouped_bar_chart(frame: pd.DataFrame, label_column: str, value_columns: list[str], title: str) -> bytes:
    """Bars of several ``value_columns`` per row of ``frame`` (labelled by ``label_column``), as PNG bytes."""
    figure = Figure(figsize=(max(6.0, 0.7 * len(frame) + 2), 3.2), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / len(value_columns)
    for offset, column in enumerate(value_columns):
        ax.bar(np.arange(len(frame)) + (offset - (len(value_columns) - 1) / 2) * width, frame[column], width,
               label=column)
    ax.set_xticks(range(len(frame)), [_plain(str(label)) for label in frame[label_column]], rotation=30, ha="right",
                  fontsize=8)
    ax.set_title(_plain(title), fontsize=9, loc="left")
    ax.legend(fontsize=7)
    return _png(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _cell(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return f'<td class="n">{"" if np.isnan(value) else f"{value:.4g}"}</td>'
    if isinstance(value, (int, np.integer)):
        return f'<td class="n">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def html_table(frame: pd.DataFrame) -> str:
    """``frame`` as an HTML table, every header and text cell escaped."""
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    body = "".join("<tr>" + "".join(_cell(value) for value in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(sections: list[Section], folder: str | os.PathLike, title: str,
                 facts: Mapping[str, object] = ()) -> list[Path]:
    """Write ``report.html`` (the ``facts`` as a list under the title, then the sections) and every table as
    ``<name>.csv`` into ``folder``; returns the paths (the page first)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if facts:
        parts.append("<ul>" + "".join(f"<li><b>{html.escape(str(key))}</b>: {html.escape(str(value))}</li>"
                                      for key, value in dict(facts).items()) + "</ul>")
    files = []
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        parts += [f'<img alt="chart" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
                  for png in section.charts]
        for name, frame in section.tables.items():
            parts.append(f"<h3>{html.escape(name)}.csv</h3>{html_table(frame)}")
            path = folder / f"{name}.csv"
            frame.to_csv(path, index=False)
            files.append(path)
    parts.append("</body></html>")
    page = folder / "report.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return [page, *files]
