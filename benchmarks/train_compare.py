"""Training benchmark (issue 3): conventional (CE) vs B-cos (BCE, several b) MiniLM on SST-2 (or ``--dataset``),
side by side.

All models train in lockstep in one process: each optimizer step is taken for every model on the same
batch, one model after the other, so the step-time ratios compare models under the same machine load.
Validation on the full validation split every ``--eval-every`` steps.

    python benchmarks/train_compare.py --steps 600 --out benchmarks/results/train_compare.json
    python benchmarks/train_compare.py --steps 100 --variant 'b1.5 scale 300={"b": 1.5, "logit_scale": 300}'

``--variant NAME=JSON`` (repeatable) replaces the B-cos variants given by ``--b``: the JSON holds
``SequenceClassifier`` arguments (``bcos`` defaults to true; ``learning_rate`` overrides ``--learning-rate``; without
either, the module's default for its kind applies: the recipe's for B-cos).
The conventional reference (cross-entropy, ``--conventional-learning-rate``) always trains first.
``--save-dir`` exports every model at its best validation step in Hugging Face format (``<save-dir>/<slug>``; an
annealed model only once its ramp has ended),
loadable with ``bcos.load_pretrained`` / ``bcos.load_model`` (e.g. for ``python -m bcos.evaluate``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
from itertools import cycle
from pathlib import Path

import torch
from tqdm import tqdm

from bcos.convert import annealing_progress
from datamodules import TextClassificationDataModule
from lightning_modules import SequenceClassifier
from lightning_modules.export import export_module

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def build(variant: dict, steps: int, num_labels: int) -> tuple[SequenceClassifier, torch.optim.Optimizer, object]:
    """A SequenceClassifier for ``variant`` with its AdamW and warm-up/decay schedule."""
    module = SequenceClassifier(MODEL, num_labels=num_labels, **variant["options"])
    module.model.train()
    configured = module.optimizer_for(steps)
    return module, configured["optimizer"], configured["lr_scheduler"]["scheduler"]


@torch.no_grad()
def accuracy(module: SequenceClassifier, batches: list[dict[str, torch.Tensor]]) -> float:
    """Accuracy (%) over all validation batches; the model is returned to training mode."""
    module.model.eval()
    correct = total = 0
    for batch in batches:
        logits = module(batch["input_ids"], batch["attention_mask"])
        correct += (logits.argmax(-1) == batch["labels"]).sum().item()
        total += batch["labels"].numel()
    module.model.train()
    return 100.0 * correct / total


def parse_variant(text: str) -> dict:
    """``NAME=JSON`` → ``{"name": NAME, "options": {...}}`` with ``bcos`` defaulting to true; NAME may itself
    contain ``=`` (the options start at the first ``={``)."""
    name, separator, options = text.partition("={")
    options = "{" + options
    if not separator or not name.strip():
        raise argparse.ArgumentTypeError(f"--variant takes NAME=JSON, got {text!r}")
    try:
        parsed = json.loads(options)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--variant {name!r}: the options are not valid JSON ({error})") from error
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"--variant {name!r}: the options must be a JSON object, got {options!r}")
    return {"name": name.strip(), "options": {"bcos": True, **parsed}}


def slug(name: str) -> str:
    """A folder name for a variant name: ``"B-cos b=1.5 (BCE)"`` → ``"b-cos_b1.5_bce"``."""
    return re.sub(r"[^a-z0-9.]+", "_", name.lower().replace("=", "")).strip("_")


def write_report(runs: list[dict], args: argparse.Namespace, validation_examples: int, steps_done: int) -> list[dict]:
    """Summarise the runs so far and write the JSON report (called after every evaluation)."""
    reference = runs[0]
    results = []
    for run in runs:
        best = max(run["curve"], key=lambda point: point["accuracy"])
        ratios = [t / c for t, c in zip(run["step_seconds"], reference["step_seconds"])]
        results.append({
            "name": run["variant"]["name"], "options": run["variant"]["options"],
            "hparams": {k: v for k, v in run["module"].hparams.items()},
            "final_accuracy": run["curve"][-1]["accuracy"], "best_accuracy": best["accuracy"],
            "best_step": best["step"], "curve": run["curve"],
            "first_step_at_99pct_of_conventional_best": next(
                (point["step"] for point in run["curve"]
                 if point["accuracy"] >= 0.99 * max(p["accuracy"] for p in reference["curve"])), None),
            "logit_scale": float(run["module"].logit_scale),
            "median_step_seconds": statistics.median(run["step_seconds"]),
            "step_time_ratio_vs_conventional": statistics.median(ratios),
            "loss_first_10": run["losses"][:10], "loss_last_10": run["losses"][-10:],
        })
    report = {
        "benchmark": "train_compare", "command": shlex.join(["python", *sys.argv]),
        "machine": {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "settings": {"model": MODEL, "validation_examples": validation_examples,
                     **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                        if k != "variant" and not (k == "b" and args.variant)}},
        "completed_steps": steps_done, "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="sst2", help="sst2, imdb, ag_news, hatexplain or a JSONL folder")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="of the B-cos variants (default: SequenceClassifier's, the recipe's)")
    parser.add_argument("--conventional-learning-rate", type=float, default=None,
                        help="default: SequenceClassifier's for conventional models")
    parser.add_argument("--b", type=float, nargs="+", default=[1.5, 2.0], help="B of the B-cos variants")
    parser.add_argument("--variant", type=parse_variant, action="append", metavar="NAME=JSON",
                        help="a B-cos variant by its SequenceClassifier arguments; replaces --b")
    parser.add_argument("--save-dir", type=Path, help="export each model at its best step here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_compare.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    data = TextClassificationDataModule(dataset=args.dataset, tokenizer=MODEL, max_length=args.max_length,
                                        batch_size=args.batch_size, eval_batch_size=128, seed=42)
    data.setup("fit")
    validation = list(data.val_dataloader())
    variants = [{"name": "conventional (CE)",
                 "options": {"bcos": False, "learning_rate": args.conventional_learning_rate}}]
    variants += args.variant or [{"name": f"B-cos b={b} (BCE)", "options": {"bcos": True, "b": b}} for b in args.b]
    for variant in variants[1:]:
        variant["options"].setdefault("learning_rate", args.learning_rate)
    runs = []
    for variant in variants:
        torch.manual_seed(0)  # the same fresh classification head for every variant
        module, optimizer, scheduler = build(variant, args.steps, data.num_labels)
        runs.append({"variant": variant, "module": module, "optimizer": optimizer, "scheduler": scheduler,
                     "step_seconds": [], "curve": [], "losses": []})

    batches = cycle(data.train_dataloader())
    for step in tqdm(range(1, args.steps + 1), desc="lockstep training"):
        batch = next(batches)
        for run in runs:
            module = run["module"]
            module.calibrate(batch)
            module.advance_annealing(step - 1, [run["optimizer"]])
            start = time.perf_counter()
            loss = module.loss(module(batch["input_ids"], batch["attention_mask"]), batch["labels"])
            run["optimizer"].zero_grad(set_to_none=True)
            loss.backward()
            run["optimizer"].step()
            run["scheduler"].step()
            run["step_seconds"].append(time.perf_counter() - start)
            run["losses"].append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            for run in runs:
                point = {"step": step, "accuracy": accuracy(run["module"], validation),
                         "converted": annealing_progress(run["module"].model) is None}  # mid-ramp: not exported
                run["curve"].append(point)
                if args.save_dir and point["converted"] and point["accuracy"] >= max(
                        p["accuracy"] for p in run["curve"] if p.get("converted", True)):
                    export_module(run["module"], data.tokenizer, args.save_dir / slug(run["variant"]["name"]))
            tqdm.write(f"step {step}: " + ", ".join(f"{r['variant']['name']} {r['curve'][-1]['accuracy']:.2f}"
                                                    for r in runs))
            results = write_report(runs, args, sum(b["labels"].numel() for b in validation), step)

    for result in results:
        print(f"{result['name']:>22}: final {result['final_accuracy']:.2f}  best {result['best_accuracy']:.2f} "
              f"@ {result['best_step']}  step-time ratio {result['step_time_ratio_vs_conventional']:.2f}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
