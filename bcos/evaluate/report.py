"""The paper-style results table: Markdown, CSV and JSON (the JSON with every setting)."""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .core import SCORES

HEADERS = {"comprehensiveness": "Comp ↑", "sufficiency": "Suff ↓", "seqpg": "SeqPG ↑",
           "plausibility_auprc": "AUPRC ↑", "plausibility_token_f1": "token F1 ↑", "plausibility_iou_f1": "IOU F1 ↑",
           "seconds_per_example": "s / example", "model_accuracy": "accuracy %", "n_seqpg_instances": "SeqPG n"}
DECIMALS = {"comprehensiveness": 2, "sufficiency": 2, "model_accuracy": 2, "seconds_per_example": 4,
            "n_seqpg_instances": 0}


def columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """``method``, ``model``, the score columns present in some row (in :data:`SCORES` order), then the rest
    (seconds per example, the explained model's accuracy, counts)."""
    present = [column for column in SCORES if any(column in row for row in rows)]
    return ["method", "model", *present, "seconds_per_example", "model_accuracy", "n_examples", "n_seqpg_instances"]


def _cell(column: str, value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{DECIMALS.get(column, 3)}f}"
    return str(value)


def markdown(rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str:
    """A Markdown table of ``rows`` (model accuracy in %) with a title and the accuracy of each model."""
    shown = [column for column in columns(rows) if column != "n_examples"]
    lines = [f"# Explanation quality: {summary['dataset']} / {summary['split']}, {summary['n_examples']} examples", "",
             "| " + " | ".join(HEADERS.get(column, column) for column in shown) + " |",
             "|" + "|".join("---" if column in ("method", "model") else "---:" for column in shown) + "|"]
    for row in rows:
        values = {**row, "model_accuracy": 100 * row["model_accuracy"]}
        lines.append("| " + " | ".join(_cell(column, values.get(column, math.nan)) for column in shown) + " |")
    lines += ["", "Task accuracy on these examples: " + ", ".join(
        f"{role} {100 * model['accuracy']:.2f} % (`{model['path']}`)" for role, model in summary["models"].items()),
        "", "Comp and Suff: AOPC x 100 over the erasure fractions (higher Comp, lower Suff is better); SeqPG: "
        "share of positive attribution in the explained segment. Every setting is in results.json."]
    return "\n".join(lines) + "\n"


def write_report(out: str | Path, rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Path]:
    """Write ``results.md``, ``results.csv`` (one row per method and model) and ``results.json`` (``summary`` with
    the rows under ``results``) into ``out``; returns their paths by format."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "results.md", "csv": out / "results.csv", "json": out / "results.json"}
    paths["md"].write_text(markdown(rows, summary), encoding="utf-8")
    with paths["csv"].open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, columns(rows), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    # NaN is not JSON: undefined scores become null
    clean = [{key: None if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()}
             for row in rows]
    paths["json"].write_text(json.dumps({**summary, "results": clean}, indent=1, default=str), encoding="utf-8")
    return paths
