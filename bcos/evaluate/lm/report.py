"""The minimal-pair results as Markdown and JSON."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .pairs import SKIP_REASONS


def _number(value: Any, digits: int = 3, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}" if percent else f"{value:.{digits}f}"


def _with_interval(row: dict[str, Any], name: str, digits: int = 3, percent: bool = False) -> str:
    """``row[name]`` and, where the row has them, its interval ``[low, high]``."""
    value = _number(row[name], digits, percent)
    if row.get(f"{name}_low") is None or math.isnan(row[f"{name}_low"]):
        return value
    return f"{value} [{_number(row[f'{name}_low'], digits, percent)}, {_number(row[f'{name}_high'], digits, percent)}]"


def _table(header: list[str], lines: list[list[str]], text_columns: int) -> list[str]:
    """A Markdown table, the first ``text_columns`` columns left-aligned, the numbers right-aligned."""
    rule = "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(header))) + "|"
    return ["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(line) + " |" for line in lines), ""]


def markdown(results: dict[str, Any]) -> str:
    """Three tables: the rows evaluated and skipped, competence per model, evidence alignment per model and method."""
    uncertainty = results.get("uncertainty")
    lines = ["# Minimal pairs: competence and evidence alignment", "",
             *([f"Brackets: {100 * uncertainty['level']:g} % percentile bootstrap intervals over the pairs "
                f"({uncertainty['resamples']} resamples, seed {uncertainty['seed']}).", ""] if uncertainty else []),
             "Rows are skipped when their evidence is missing (`no_evidence`) or covers the whole prefix "
             "(`evidence_is_whole_prefix`), and when target and foil share their first token (`same_first_token`).",
             ""]
    lines += _table(["suite", "subset", "rows", *SKIP_REASONS, "evaluated"],
                    [[r["suite"], r["subset"], str(r["n_rows"]), *(str(r[k]) for k in SKIP_REASONS), str(r["n_pairs"])]
                     for r in results["skipped"]], 2)
    lines += ["## Competence: target over foil (first tokens)", ""]
    lines += _table(["suite", "subset", "model", "pairs", "accuracy %", "p(target) - p(foil)"],
                    [[r["suite"], r["subset"], r["model"], str(r["n_pairs"]), _with_interval(r, "accuracy", percent=True),
                      _number(r["probability_gap"], 4)] for r in results["competence"]], 3)
    lines += ["## Evidence alignment of contrastive explanations (target vs foil)", "",
              "MRR: mean reciprocal rank of the best-ranked evidence word (ties with other words count half; method "
              "`random`: chance level); evidence share: positive attribution on the evidence words / all positive "
              "attribution, averaged over the pairs with some positive attribution (`share pairs`).", ""]
    lines += _table(["suite", "subset", "model", "method", "pairs", "MRR ↑", "evidence share ↑", "share pairs",
                     "s / pair"],
                    [[r["suite"], r["subset"], r["model"], r["method"], str(r["n_pairs"]), _with_interval(r, "mrr"),
                      _number(r["evidence_share"]), str(r.get("evidence_share_pairs", "–")),
                      _number(r["seconds_per_pair"], 4)]
                     for r in results["alignment"]], 4)
    return "\n".join(lines)


def write_report(out: str | Path, results: dict[str, Any]) -> dict[str, Path]:
    """Write ``results.md`` and ``results.json`` (NaN as null) into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "results.md", "json": out / "results.json"}
    paths["md"].write_text(markdown(results), encoding="utf-8")

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list):
            return [clean(item) for item in value]
        return value

    paths["json"].write_text(json.dumps(clean(results), indent=1, default=str), encoding="utf-8")
    return paths
