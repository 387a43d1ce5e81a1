"""Validation curves of ``train.py fit`` runs, read from their TensorBoard events (issue 10): per run the accuracy at
each validation, the best and its step, the first step at which it reaches 99 % of the reference run's best, and the
median seconds per training step (from the wall times of ``train/loss``, leaving out the intervals that contain a
validation), as JSON and a Markdown table.

    python benchmarks/run_curves.py --run conventional runs/hatexplain-conventional/version_0 \\
        --run "B-cos b=1.5" runs/hatexplain-bcos/version_0 --out benchmarks/results/hatexplain_600.json

The first ``--run`` is the reference (the conventional model); step-time ratios are to it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_run(folder: Path, metric: str) -> dict:
    """The run's ``metric`` curve (validation steps are 1-based: the number of steps done) and its step times."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    if metric not in tags or "train/loss" not in tags:
        raise SystemExit(f"{folder}: no {metric!r} or 'train/loss' scalars (tags: {', '.join(tags)})")
    validations = events.Scalars(metric)
    curve = [{"step": event.step + 1, "value": event.value} for event in validations]
    losses = events.Scalars("train/loss")
    validation_times = [event.wall_time for event in validations]
    step_seconds = [(later.wall_time - earlier.wall_time) / (later.step - earlier.step)
                    for earlier, later in zip(losses, losses[1:])
                    if not any(earlier.wall_time < time < later.wall_time for time in validation_times)]
    return {"folder": str(folder), "curve": curve,
            "median_step_seconds": statistics.median(step_seconds) if step_seconds else None}


def summarise(runs: dict[str, dict]) -> list[dict]:
    reference = next(iter(runs.values()))
    reference_best = max(point["value"] for point in reference["curve"])
    rows = []
    for name, run in runs.items():
        best = max(run["curve"], key=lambda point: point["value"])
        reached = next((point["step"] for point in run["curve"] if point["value"] >= 0.99 * reference_best), None)
        ratio = (run["median_step_seconds"] / reference["median_step_seconds"]
                 if run["median_step_seconds"] and reference["median_step_seconds"] else None)
        rows.append({"name": name, **run, "best": best["value"], "best_step": best["step"],
                     "first_step_at_99pct_of_reference_best": reached, "step_time_ratio_vs_reference": ratio})
    return rows


def markdown(rows: list[dict]) -> str:
    steps = sorted({point["step"] for row in rows for point in row["curve"]})
    header = ["run", *(f"@{step}" for step in steps), "best (step)", "first step ≥ 99 % of the reference's best",
              "step time / reference"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = {point["step"]: point["value"] for point in row["curve"]}
        lines.append("| " + " | ".join([
            row["name"], *(f"{100 * values[step]:.2f}" if step in values else "–" for step in steps),
            f"**{100 * row['best']:.2f}** ({row['best_step']})", str(row["first_step_at_99pct_of_reference_best"] or "never"),
            f"{row['step_time_ratio_vs_reference']:.2f}" if row["step_time_ratio_vs_reference"] else "–"]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs=2, action="append", required=True, metavar=("NAME", "FOLDER"))
    parser.add_argument("--metric", default="val/acc")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = summarise({name: read_run(Path(folder), args.metric) for name, folder in args.run})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "run_curves", "command": " ".join(["python", *sys.argv]),
                                    "metric": args.metric, "runs": rows}, indent=1) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
