"""Community bias of trained HateXplain classifiers (issue 14): for each model, explain the whole HateXplain test
split with ``python -m bcos.explain_corpus`` and analyse it with ``python -m bcos.analysis``; collect the bias AUCs
(subgroup, BPSN, BNSP per target community and their generalised mean, p = -5) and the attribution share on each
community's identity words into one JSON, and print the Markdown tables of BENCHMARKS.md.

    python benchmarks/bias_table.py --work /work/bias \\
        --model "B-cos b=1.5" runs/hatexplain-bcos/version_0/hf_export bcos \\
        --model "conventional" runs/hatexplain-conventional/version_0/hf_export input_x_gradient

Each ``--model NAME EXPORT METHOD`` is explained with METHOD (``bcos`` for a B-cos model; a post-hoc method for a
conventional one). The corpora and reports stay under ``--work``: an interrupted run continues where it stopped, and a
corpus written before (e.g. by this script for one model at a time, in parallel) is only read.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from a checkout: use this working tree's bcos

from bcos.analysis import read_corpus  # noqa: E402
from bcos.cli import analyze, explain_corpus  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "bias_hatexplain.json"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "_", name.lower()).strip("_")


def analyse(name: str, export: str, method: str, args: argparse.Namespace) -> dict:
    """Explains the split with ``method``, analyses it, and returns the model's summary row."""
    corpus_dir, report_dir = args.work / slug(name) / "corpus", args.work / slug(name) / "report"
    explain_corpus.main(["--model", export, "--dataset", args.dataset, "--split", args.split, "--method", method,
                         "--keep-columns", "id,annotator_targets", "--max-length", str(args.max_length),
                         "--out", str(corpus_dir), *(["--max-examples", str(args.max_examples)] if args.max_examples else [])])
    result = analyze.main(["--corpus", str(corpus_dir), "--out", str(report_dir), "--normal-class", args.normal_class])
    rows = read_corpus(corpus_dir).rows
    aucs = pd.read_csv(report_dir / "bias_aucs.csv")
    identity = pd.read_csv(report_dir / "identity_shares.csv")
    # one share per community: the classes' shares weighted by their posts
    weights = identity["posts"] / identity.groupby("community")["posts"].transform("sum")
    per_community = (identity.assign(weighted=identity["absolute_share"] * weights)
                     .groupby("community", sort=False)["weighted"].sum())
    return {"name": name, "export": export, "method": method, "examples": len(rows),
            "accuracy": float((rows["prediction"] == rows["label"]).mean()),
            "bias_means": result["bias_means"],
            "aucs": aucs.to_dict(orient="records"), "identity_shares": identity.to_dict(orient="records"),
            "identity_absolute_share": per_community.to_dict(), "report": str(report_dir / "report.html")}


def markdown(models: list[dict]) -> str:
    """The summary table (accuracy, generalised means) and the per-community table (AUCs, identity share)."""
    lines = ["| model (explanation) | test acc. % | GMB subgroup AUC | GMB BPSN AUC | GMB BNSP AUC |",
             "|---|---:|---:|---:|---:|"]
    for model in models:
        means = model["bias_means"]
        lines.append(f"| {model['name']} ({model['method']}) | {100 * model['accuracy']:.2f} | "
                     f"{means['subgroup_auc']:.4f} | {means['bpsn_auc']:.4f} | {means['bnsp_auc']:.4f} |")
    communities = [row["community"] for row in models[0]["aucs"]]
    header = " | ".join(f"{model['name']}: subgroup / BPSN / BNSP, identity share" for model in models)
    lines += ["", f"| community (posts) | {header} |", "|---|" + "---|" * len(models)]
    for community in communities:
        cells = []
        for model in models:
            row = next(r for r in model["aucs"] if r["community"] == community)
            cells.append(f"{row['subgroup_auc']:.3f} / {row['bpsn_auc']:.3f} / {row['bnsp_auc']:.3f}, "
                         f"{model['identity_absolute_share'].get(community, float('nan')):.3f}")
        posts = next(r for r in models[0]["aucs"] if r["community"] == community)["posts"]
        lines.append(f"| {community} ({posts}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs=3, action="append", required=True, metavar=("NAME", "EXPORT", "METHOD"))
    parser.add_argument("--dataset", default="hatexplain")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-examples", type=int, default=None, help="the first N examples (a smoke test)")
    parser.add_argument("--normal-class", default="normal", help="the non-toxic class (name or id)")
    parser.add_argument("--work", type=Path, required=True, help="corpora and reports (resumable)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    models = [analyse(name, export, method, args) for name, export, method in args.model]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "bias_table", "command": " ".join(["python", *sys.argv]),
                                    "dataset": args.dataset, "split": args.split, "max_length": args.max_length,
                                    "models": models}, indent=1, default=str) + "\n")
    print(markdown(models))


if __name__ == "__main__":
    main()
