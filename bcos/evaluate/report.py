"""The paper-style results table: Markdown, CSV and JSON (the JSON with every setting and the per-example scores).

A row is one method on one model: its scores (:data:`~bcos.evaluate.core.SCORES`), for each score with
per-example values ``<score>_low`` / ``<score>_high`` (the bootstrap interval), for post-hoc methods
``bcos_minus_<score>`` with ``_low`` / ``_high`` (the interval of B-cos minus the method: paired over the same
examples; for the pointing game of a method on another model, over each model's own instances), counts, the
explained model's accuracy and per class ``predicted_rate_<k>`` / ``label_rate_<k>``; in the JSON also
``per_example`` and ``per_instance`` (the values the intervals resample).
"""
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
           "entropy": "entropy", "special_token_share": "special share",
           "seconds_per_example": "s / example", "model_accuracy": "accuracy %", "n_seqpg_instances": "SeqPG n",
           "n_plausibility": "plausibility n"}
DECIMALS = {"comprehensiveness": 2, "sufficiency": 2, "model_accuracy": 2, "seconds_per_example": 4,
            "n_seqpg_instances": 0}
DIFFERENCE = "bcos_minus_"
#: the files :func:`write_report` writes, by format (the JSON first: it holds everything)
FILES = {"json": "results.json", "md": "results.md", "csv": "results.csv"}


def _present(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> list[str]:
    return [name for name in names if any(name in row for row in rows)]


def columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The CSV columns: ``method``, ``model``, each score present in some row (in :data:`SCORES` order) with its
    interval, the differences to B-cos, then seconds per example, the explained model's accuracy, counts
    and the per-class prediction and label rates."""
    scores = [name for score in SCORES for name in (score, f"{score}_low", f"{score}_high")]
    differences = [DIFFERENCE + name for name in scores]
    rates = sorted({key for row in rows for key in row if key.startswith(("predicted_rate_", "label_rate_"))},
                   key=lambda key: (key.startswith("label"), int(key.rsplit("_", 1)[1])))
    return ["method", "model", *_present(rows, scores), *_present(rows, differences), "seconds_per_example",
            "model_accuracy", "n_examples", *_present(rows, ["n_seqpg_instances", "n_plausibility"]), *rates]


def _number(column: str, value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:{'+' if signed else ''}.{DECIMALS.get(column, 3)}f}"
    return str(value)


def _with_interval(row: dict[str, Any], column: str, prefix: str = "") -> str:
    """``value [low, high]`` (the interval when the row has one); a difference is signed and marked ``*`` when
    its interval excludes 0."""
    signed = bool(prefix)
    value, low, high = (row.get(f"{prefix}{column}{suffix}", math.nan) for suffix in ("", "_low", "_high"))
    cell = _number(column, value, signed)
    if f"{prefix}{column}_low" not in row or math.isnan(low):
        return cell
    cell += f" [{_number(column, low, signed)}, {_number(column, high, signed)}]"
    return cell + (" *" if signed and (low > 0 or high < 0) else "")


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    rule = "|" + "|".join("---" if name in ("method", "model") else "---:" for name in header) + "|"
    return ["| " + " | ".join(HEADERS.get(name, name) for name in header) + " |", rule,
            *("| " + " | ".join(line) + " |" for line in lines)]


def markdown(rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The Markdown report: the table of every method and model (each score with its confidence interval, model
    accuracy in %), the table of differences B-cos minus each post-hoc method, the accuracy and the
    predicted-class rates of each model, and how the intervals were drawn."""
    scores = _present(rows, SCORES)
    shown = ["method", "model", *scores, "seconds_per_example", "model_accuracy",
             *_present(rows, ["n_seqpg_instances", "n_plausibility"])]
    lines = [f"# Explanation quality: {summary['dataset']} / {summary['split']}, {summary['n_examples']} examples", ""]
    lines += _table(shown, [[row[name] if name in ("method", "model") else
                             _with_interval(row, name) if name in scores else
                             _number(name, 100 * row[name] if name == "model_accuracy" else row.get(name, math.nan))
                             for name in shown] for row in rows])
    uncertainty = summary.get("uncertainty")
    level = f"{100 * uncertainty['level']:g} %" if uncertainty else ""
    compared = [row for row in rows if any(key.startswith(DIFFERENCE) for key in row)]
    if compared:
        differences = [name for name in scores if any(DIFFERENCE + name in row for row in compared)]
        lines += ["", f"## B-cos minus each post-hoc method ({level} bootstrap interval, paired over the same examples)",
                  "", "Positive is better for B-cos in Comp, SeqPG and plausibility, negative in Suff; `*`: the "
                  "interval excludes 0. SeqPG is paired on the B-cos model (the same pointing-game instances); on "
                  "another model, which builds its own instances, the two instance sets are resampled independently.",
                  ""]
        lines += _table(["method", "model", *differences],
                        [[row["method"], row["model"], *(_with_interval(row, name, DIFFERENCE) for name in differences)]
                         for row in compared])
    lines += ["", "Task accuracy on these examples: " + ", ".join(
        f"{role} {100 * model['accuracy']:.2f} % (`{model['path']}`)" for role, model in summary["models"].items())]
    for role, model in summary["models"].items():
        rates = model.get("prediction_rates")
        if rates:
            lines += ["", f"Predicted classes of {role} vs the labels: " + ", ".join(
                f"class {k} {100 * predicted:.1f} % (labels {100 * labelled:.1f} %)"
                for k, (predicted, labelled) in enumerate(zip(rates["predicted"], rates["labelled"])))]
    lines += ["", "Comp and Suff: AOPC x 100 over the erasure fractions (higher Comp, lower Suff is better); SeqPG: "
              "share of positive attribution in the explained segment; entropy: normalised entropy of |attribution| "
              "over the content tokens (lower: sparser); special share: share of |attribution| on special tokens."]
    if uncertainty:
        lines += ["", f"[low, high]: {level} percentile bootstrap interval of the mean over the examples (SeqPG: "
                  f"over its instances), {uncertainty['resamples']} resamples, seed {uncertainty['seed']}; IOU F1 "
                  "has none (an F1 of two means)."]
    sampling = summary.get("sampling")
    if sampling:
        lines += ["", f"The {summary['n_examples']} examples are a sample of the {sampling['available']} usable rows, "
                  f"stratified by label (seed {sampling['seed']}): "
                  + ", ".join(f"class {label}: {count}" for label, count in sampling["per_class"].items()) + "."]
    lines += ["", "Every setting and the per-example scores are in results.json."]
    return "\n".join(lines) + "\n"


def _json_safe(value: Any) -> Any:
    """NaN (not JSON) as null, throughout."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def write_report(out: str | Path, rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Path]:
    """Write :data:`FILES` into ``out``: ``results.json`` (``summary`` with the rows under ``results``) first,
    then ``results.md`` and ``results.csv`` (one row per method and model, without the per-example lists);
    returns their paths by format."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / name for kind, name in FILES.items()}
    paths["json"].write_text(json.dumps(_json_safe({**summary, "results": list(rows)}), indent=1, default=str),
                             encoding="utf-8")
    paths["md"].write_text(markdown(rows, summary), encoding="utf-8")
    with paths["csv"].open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, columns(rows), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return paths
