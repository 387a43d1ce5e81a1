"""Render docs/RESULTS.md from the experiments' cell JSON (``benchmarks/paper/run.py`` writes them): one section
per experiment with its caption, table and a reading computed from the intervals (never edited by hand)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from bcos.metrics import Interval, paired_difference_interval

#: the paper's claim beside each experiment (Wang et al., B-cos LM); for the decoders, the claim this project checks
PAPER = {
    "faithfulness": "B-cos explanations ahead of the strongest post-hoc method by +14.63 comprehensiveness on "
                    "average, with the best sufficiency and sequence pointing game.",
    "b_sweep": "B trades accuracy against faithfulness and sparsity: higher B, lower entropy (sparser explanations), "
               "more attribution on special tokens and more positive predictions.",
    "ablation": "every B-cos adaptation matters: removing bias removal, BCE, head-activation removal or alignment "
                "pressure (b = 1) each costs faithfulness.",
    "decoders": "a B-cos decoder keeps the minimal-pair competence of "
                "the same decoder given the same continued training conventionally, and its exact contrastive "
                "explanations find the evidence at least as well as post-hoc ones on the conventional decoder.",
}
TITLES = {"faithfulness": "Faithfulness: B-cos vs post-hoc explanations", "b_sweep": "The B sweep",
          "ablation": "Ablation of the B-cos adaptations", "decoders": "Decoders: minimal pairs (BLiMP, IOI)"}
SCORES = ("comprehensiveness", "sufficiency", "seqpg", "plausibility_auprc")
HEADERS = {"comprehensiveness": "Comp ↑", "sufficiency": "Suff ↓", "seqpg": "SeqPG ↑",
           "plausibility_auprc": "AUPRC ↑", "entropy": "entropy", "special_token_share": "special share"}
#: for each score, whether a larger value is better (the sign of "B-cos ahead" in a paired difference)
HIGHER_IS_BETTER = {"comprehensiveness": True, "sufficiency": False, "seqpg": True, "plausibility_auprc": True}
#: the scores besides Comp in which issue 11's goal asks B-cos to be best or tied-best (others are only reported)
GOAL_SCORES = ("sufficiency", "seqpg")
#: the per-example scores by which a sweep's or an ablation's rows are compared with the recipe's row (paired)
COMPARED = ("comprehensiveness", "sufficiency", "plausibility_auprc", "entropy", "special_token_share")


def number(value: Any, decimals: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:{'+' if signed else ''}.{decimals}f}"


def with_interval(row: dict[str, Any], name: str, decimals: int = 2, signed: bool = False) -> str:
    cell = number(row.get(name), decimals, signed)
    if row.get(f"{name}_low") is not None:
        cell += f" [{number(row[f'{name}_low'], decimals, signed)}, {number(row[f'{name}_high'], decimals, signed)}]"
    return cell


def verdict(row: dict[str, Any], score: str) -> str:
    """``ahead`` / ``behind`` (the paired interval of B-cos − method excludes 0) or ``tie``."""
    low, high = row.get(f"bcos_minus_{score}_low"), row.get(f"bcos_minus_{score}_high")
    if low is None or high is None or math.isnan(low):
        return "no interval"
    better = low > 0 if HIGHER_IS_BETTER[score] else high < 0
    worse = high < 0 if HIGHER_IS_BETTER[score] else low > 0
    return "B-cos ahead" if better else "B-cos behind" if worse else "tie (the interval includes 0)"


def present(rows: list[dict[str, Any]], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if any(row.get(name) is not None for row in rows)]


def table(header: list[str], lines: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(line) + " |" for line in lines)]


def model_line(cell: dict[str, Any]) -> str:
    models = cell["evaluation"]["models"]
    parts = []
    for kind, info in cell["models"].items():
        scores = models.get(kind, {})
        f1 = f", macro-F1 {number(100 * scores['macro_f1'])} %" if scores.get("macro_f1") is not None else ""
        training = info.get("training")
        steps = f", trained {training['steps']} steps" if training else f", reused export `{info['export']}`"
        parts.append(f"{kind} `{info['key']}`{steps}: accuracy {number(100 * scores.get('accuracy', math.nan))} %{f1}")
    return "; ".join(parts)


def caption(cell: dict[str, Any], command: str | None = None) -> str:
    """The italic caption of a table: data, sample size, the budget's caption and ``command`` (default: the
    cell's own ``bcos.evaluate`` command)."""
    evaluation = cell["evaluation"]
    bootstrap = evaluation.get("bootstrap") or {}
    resamples = f", {bootstrap['resamples']} bootstrap resamples (seed {bootstrap['seed']})" if bootstrap else ""
    command = f"`{evaluation.get('command', '')}`" if command is None else command
    return (f"*{cell['dataset']} / {cell['split']}, {evaluation['n_examples']} examples{resamples}; "
            f"{cell.get('caption', '')} Command: {command}*")


def table_command(cells: list[dict[str, Any]]) -> str:
    """The command behind a table of several cells (the sweep, the ablation): ``run.py`` with the cells' budgets;
    each row's ``bcos.evaluate`` command is in its cell's JSON."""
    budgets = ", ".join(f"`{name}`" for name in dict.fromkeys(cell.get("budget", "unnamed") for cell in cells))
    return (f"`python benchmarks/paper/run.py {cells[0]['experiment']}` with budget {budgets} (each row's "
            "`python -m bcos.evaluate` command is in its cell's JSON)")


def faithfulness_section(cell: dict[str, Any]) -> list[str]:
    rows = cell["evaluation"]["results"]
    scores = present(rows, SCORES)
    lines = [[row["method"], row["model"], *(with_interval(row, score) for score in scores),
              *(with_interval(row, f"bcos_minus_{score}", signed=True) if row["method"] != "bcos" else "–"
                for score in scores[:1]), number(row.get("seconds_per_example"), 4)] for row in rows]
    header = ["method", "explained model", *(HEADERS[score] + " [95 % CI]" for score in scores),
              "B-cos − method, Comp [paired 95 % CI]", "s / example"]
    out = [f"### {cell['dataset']}", "", caption(cell), "", *table(header, lines), "", model_line(cell), ""]
    posthoc = [row for row in rows if row["method"] != "bcos" and row["model"] == "conventional"]
    if posthoc and "comprehensiveness" in scores:
        out += [reading(posthoc, scores), ""]
    return out


def reading(posthoc: list[dict[str, Any]], scores: list[str]) -> str:
    """The goal of issue 11 read off the rows of the post-hoc methods on the conventional model: B-cos ahead of the
    strongest of them in Comp (paired interval excluding 0), and best or tied-best (behind none, each compared with
    an interval) in the other scores that have a direction."""
    scored = [row for row in posthoc if isinstance(row.get("comprehensiveness"), (int, float))
              and math.isfinite(row["comprehensiveness"])]
    if not scored:
        return "Reading: no post-hoc method has a Comp score on the conventional model; goal **undetermined**."
    strongest = max(scored, key=lambda row: row["comprehensiveness"])
    comp = verdict(strongest, "comprehensiveness")
    parts, reached = [f"Comp: the strongest post-hoc method is **{strongest['method']}**; B-cos − it: {comp}"], \
        comp == "B-cos ahead"
    for score in (score for score in scores if score in HIGHER_IS_BETTER and score != "comprehensiveness"):
        behind = [row["method"] for row in posthoc if verdict(row, score) == "B-cos behind"]
        unknown = [row["method"] for row in posthoc if verdict(row, score) == "no interval"]
        if behind:
            state = f"behind {', '.join(behind)}"
        elif len(unknown) == len(posthoc):
            state = "undetermined (no interval)"
        else:
            state = "best or tied-best" + (f" among those with an interval (none against {', '.join(unknown)})"
                                           if unknown else "")
        reached = reached and (score not in GOAL_SCORES or (not behind and not unknown))
        parts.append(f"{HEADERS[score]}: {state}")
    return (f"Reading (post-hoc methods on the conventional model; SeqPG compares each model's own instances, "
            f"resampled independently): {'; '.join(parts)}. Goal (B-cos ahead in Comp with the paired interval "
            f"excluding 0, and best or tied-best in Suff and SeqPG): **{'reached' if reached else 'not reached'}**.")


def sweep_section(cells: list[dict[str, Any]], label: str) -> list[str]:
    rows = [(cell, next(row for row in cell["evaluation"]["results"] if row["method"] == "bcos")) for cell in cells]
    scores = present([row for _, row in rows], SCORES)
    classes = sorted({key.rsplit("_", 1)[1] for _, row in rows for key in row if key.startswith("predicted_rate_")})
    header = [label, "accuracy %", "macro-F1 %", *(HEADERS[score] for score in scores), "entropy", "special share",
              *(f"predicted {k} (label rate)" for k in classes)]
    lines = []
    for cell, row in rows:
        model = cell["evaluation"]["models"]["bcos"]
        lines.append([cell["cell"], number(100 * model["accuracy"]), number(100 * model.get("macro_f1", math.nan)),
                      *(with_interval(row, score) for score in scores), number(row.get("entropy"), 3),
                      number(row.get("special_token_share"), 3),
                      *(f"{number(row.get(f'predicted_rate_{k}'), 3)} ({number(row.get(f'label_rate_{k}'), 3)})"
                        for k in classes)])
    return [caption(cells[0], table_command(cells)), "", *table(header, lines), "",
            *(f"- {cell['cell']}: {model_line(cell)}" for cell in cells), "", *comparison_with_recipe(cells, label),
            *(trend_over_b(cells) if label == "b" else [])]


#: the sweep's scores whose direction over b the paper states, with the paper's direction
TRENDS = {"entropy": "falls", "special_token_share": "rises"}


def trend_over_b(cells: list[dict[str, Any]]) -> list[str]:
    """Whether each score of :data:`TRENDS` rises or falls monotonically with b over the rows (point estimates,
    ordered by the B-cos model's b), beside the paper's direction; [] with fewer than three rows."""
    if len(cells) < 3:
        return []
    ordered = sorted(cells, key=lambda cell: cell["evaluation"]["models"]["bcos"]["bcos"]["b"])
    b_values = [cell["evaluation"]["models"]["bcos"]["bcos"]["b"] for cell in ordered]
    parts = []
    for score, paper in TRENDS.items():
        values = [bcos_row(cell).get(score) for cell in ordered]
        if any(not isinstance(value, (int, float)) for value in values):
            continue
        steps = [after - before for before, after in zip(values, values[1:])]
        direction = "rises" if all(step > 0 for step in steps) else "falls" if all(step < 0 for step in steps) else None
        found = f"{direction} monotonically" if direction else "is not monotone"
        agreement = "as in the paper" if direction == paper else f"the paper: it {paper}"
        parts.append(f"{HEADERS[score]} {found} with b ({' → '.join(number(v, 3) for v in values)}; {agreement})")
    if not parts:
        return []
    return [f"Trend over b (point estimates of single trainings, b = {', '.join(map(str, b_values))}): "
            f"{'; '.join(parts)}.", ""]


def bcos_row(cell: dict[str, Any]) -> dict[str, Any]:
    return next(row for row in cell["evaluation"]["results"] if row["method"] == "bcos")


def paired_to(cell: dict[str, Any], reference: dict[str, Any], score: str) -> Interval | None:
    """The paired bootstrap interval of ``cell`` − ``reference`` in ``score`` over their shared examples (the
    cell's own resampling settings); None when either lacks per-example values or they scored other examples."""
    values = [bcos_row(c).get("per_example", {}).get(score) for c in (cell, reference)]
    if None in values or cell["evaluation"].get("example_rows") != reference["evaluation"].get("example_rows"):
        return None
    first, second = (torch.tensor([math.nan if v is None else v for v in vs], dtype=torch.float64) for vs in values)
    uncertainty = cell["evaluation"]["uncertainty"]
    return paired_difference_interval(first, second, uncertainty["level"], uncertainty["resamples"],
                                      uncertainty["seed"])


def comparison_with_recipe(cells: list[dict[str, Any]], label: str) -> list[str]:
    """Each row minus the recipe's row (the cell whose B-cos model has no option over the recipe), paired over the
    same examples, and a reading naming the differences whose interval excludes 0."""
    reference = next((cell for cell in cells if not cell["models"]["bcos"]["options"]), None)
    others = [cell for cell in cells if cell is not reference]
    if reference is None or not others:
        return []
    scores = [score for score in COMPARED if bcos_row(reference).get("per_example", {}).get(score) is not None]
    lines, significant = [], []
    for cell in others:
        line = [cell["cell"]]
        for score in scores:
            interval = paired_to(cell, reference, score)
            if interval is None:
                line.append("not paired")
                continue
            excluded = interval.excludes(0.0)
            decimals = 2 if score in ("comprehensiveness", "sufficiency") else 3
            line.append(f"{number(interval.mean, decimals, True)} [{number(interval.low, decimals, True)}, "
                        f"{number(interval.high, decimals, True)}]{' *' if excluded else ''}")
            if excluded:
                direction = "higher" if interval.mean > 0 else "lower"
                worse = score in HIGHER_IS_BETTER and (interval.mean > 0) != HIGHER_IS_BETTER[score]
                significant.append(f"{cell['cell']}: {HEADERS[score]} {direction}"
                                   f"{' (worse)' if worse else ' (better)' if score in HIGHER_IS_BETTER else ''}")
        lines.append(line)
    reading = ("; ".join(significant) + "; every other difference is a tie") if significant else (
        "every difference is a tie (each interval includes 0)")
    return [f"Each {label} row minus the recipe's ({reference['cell']}), paired over the same examples (95 % "
            "bootstrap interval; `*`: it excludes 0):", "",
            *table([label, *(HEADERS[score] for score in scores)], lines), "",
            f"Reading: {reading}. Single trainings per row: the intervals cover the evaluated examples, not the "
            "training seed.", ""]


def decoder_section(cell: dict[str, Any]) -> list[str]:
    """One suite: competence per subset and model, and the evidence alignment pooled over the suite's subsets."""
    evaluation = cell["evaluation"]
    settings, uncertainty = evaluation["settings"], evaluation["uncertainty"]
    rows = settings.get("max_examples")
    trained = "; ".join(f"{kind} `{info['key']}`: " + (f"trained {info['training']['steps']} steps"
                                                         if info.get("training") else f"reused `{info['export']}`")
                        for kind, info in cell["models"].items())
    out = [f"### {cell['dataset']}", "",
           f"*{cell['dataset']}, {'the first ' + str(rows) if rows else 'all'} rows of each subset file, "
           f"{uncertainty['resamples']} bootstrap resamples (seed {uncertainty['seed']}); {cell.get('caption', '')} "
           f"{trained}. Command: `{settings.get('command', '')}`*", "",
           *table(["subset", "model", "pairs", "accuracy % [95 % CI]", "p(target) − p(foil)"],
                  [[row["subset"], row["model"], str(row["n_pairs"]),
                    with_interval({name: 100 * row[name] if row.get(name) is not None else None
                                   for name in ("accuracy", "accuracy_low", "accuracy_high")}, "accuracy", 1),
                    number(row["probability_gap"], 4)] for row in evaluation["competence"]]), "",
           "Evidence alignment, pooled over the subsets (MRR of the best-ranked evidence word; `random`: chance):", "",
           *table(["explained model", "method", "pairs", "MRR ↑ [95 % CI]", "evidence share ↑", "s / pair"],
                  [[row["model"], row["method"], str(row["n_pairs"]), with_interval(row, "mrr", 3),
                    number(row["evidence_share"], 3), number(row["seconds_per_pair"], 4)]
                   for row in evaluation["alignment"] if row["subset"] == "all"]), ""]
    pooled = {row["model"]: row for row in evaluation["competence"] if row["subset"] == "all"}
    reading = []
    if {"bcos", "conventional"} <= set(pooled):
        bcos, conventional = pooled["bcos"], pooled["conventional"]
        reading.append(f"pooled accuracy B-cos {number(100 * bcos['accuracy'], 1)} % vs conventional "
                       f"{number(100 * conventional['accuracy'], 1)} %: {overlap_reading(bcos, conventional, 'accuracy')}")
    alignment = [row for row in evaluation["alignment"] if row["subset"] == "all" and row["mrr"] is not None]
    bcos_rows = [row for row in alignment if row["method"] == "bcos"]
    posthoc = [row for row in alignment if row["method"] not in ("bcos", "random")]
    if bcos_rows and posthoc:
        best = max(posthoc, key=lambda row: row["mrr"])
        reading.append(f"evidence MRR B-cos {number(bcos_rows[0]['mrr'], 3)} vs the best post-hoc method, {best['method']} "
                       f"on the {best['model']} model, {number(best['mrr'], 3)}: {overlap_reading(bcos_rows[0], best, 'mrr')}")
    if reading:
        out += ["Reading: " + "; ".join(reading) + " (two models' or methods' intervals, not a paired interval).", ""]
    return out


def overlap_reading(first: dict[str, Any], second: dict[str, Any], name: str) -> str:
    """Whether the 95 % intervals of ``name`` in two rows are apart (which is ahead) or overlap."""
    if first[f"{name}_low"] > second[f"{name}_high"]:
        return "the intervals do not overlap (B-cos ahead)"
    if second[f"{name}_low"] > first[f"{name}_high"]:
        return "the intervals do not overlap (B-cos behind)"
    return "the intervals overlap (no difference shown)"


def render(results: Path) -> str:
    """The whole of docs/RESULTS.md from ``results/<experiment>/*.json``."""
    out = ["# Results: the paper's experiments on this codebase", "",
           "Generated by `python benchmarks/paper/run.py` from the JSON under `benchmarks/results/paper/` (one file "
           "per cell); do not edit by hand. Intervals are 95 % percentile bootstrap intervals over the evaluated "
           "examples; a paired interval of B-cos − method that includes 0 is a tie.", ""]
    for experiment, title in TITLES.items():
        files = sorted((results / experiment).glob("*.json"))
        claim = "Checked here (issue 11)" if experiment == "decoders" else "The paper"
        out += [f"## {title}", "", f"{claim}: {PAPER[experiment]}", ""]
        if not files:
            out += ["Not run yet.", ""]
            continue
        cells = sorted((json.loads(path.read_text()) for path in files), key=lambda cell: cell.get("position", 0))
        if experiment in ("faithfulness", "decoders"):
            section = faithfulness_section if experiment == "faithfulness" else decoder_section
            for cell in cells:
                out += section(cell)
        else:
            out += sweep_section(cells, "b" if experiment == "b_sweep" else "variant")
    return "\n".join(out).rstrip() + "\n"
