"""Explanation cost of B-cos MiniLM vs its forward passes and vs Integrated Gradients (issue 2).

Measures, in one process and interleaved round by round (so that load from other processes on a shared
CPU hits every measurement alike):

1. a no-grad forward pass of the conventional model (the unit);
2. a no-grad forward pass of the B-cos model (a bcosified deep copy, b=2);
   and, to split the explanation's cost, its forward pass in explanation mode with autograd recording;
3. one B-cos explanation of the predicted class (``bcos.explain``);
4. a B-cos explanation of all classes at once (``target="all"``);
5. Captum ``LayerIntegratedGradients`` on the word embeddings of the conventional model ([PAD] reference
   with the special tokens kept).

Writes every raw timing, medians, minima, ratios, machine info and the completeness error of the B-cos
explanation to a JSON file. Run from the repository root::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python benchmarks/explain_cost.py
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from captum.attr import LayerIntegratedGradients
from torch import nn
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from a checkout: use this working tree's bcos

import bcos  # noqa: E402

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "sst2" / "validation.jsonl"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "explain_cost.json"

#: Goals of issue 2, as (numerator, denominator, bound, "<=" or ">=").
GOALS = {
    "bcos_explain_over_bcos_forward": ("bcos_explain", "bcos_forward", 3.0, "<="),
    "ig_over_bcos_explain": ("integrated_gradients", "bcos_explain", 15.0, ">="),
}

#: Reported ratios: name → (numerator, denominator).
RATIOS = {
    "bcos_forward_over_conventional_forward": ("bcos_forward", "conventional_forward"),
    "bcos_explanation_mode_forward_over_bcos_forward": ("bcos_explanation_mode_forward", "bcos_forward"),
    "bcos_explain_over_conventional_forward": ("bcos_explain", "conventional_forward"),
    "bcos_explain_over_bcos_forward": ("bcos_explain", "bcos_forward"),
    "bcos_explain_all_over_bcos_explain": ("bcos_explain_all", "bcos_explain"),
    "ig_over_bcos_explain": ("integrated_gradients", "bcos_explain"),
    "ig_over_conventional_forward": ("integrated_gradients", "conventional_forward"),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=16, help="sentences per batch")
    parser.add_argument("--seq-len", type=int, default=64, help="padded/truncated token length")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds of the cheap measurements")
    parser.add_argument("--ig-repeats", type=int, default=2,
                        help="timed rounds that also run Integrated Gradients (the first ones; it is slow)")
    parser.add_argument("--ig-steps", type=int, default=50, help="Integrated Gradients steps")
    parser.add_argument("--ig-internal-batch-size", type=int, default=None,
                        help="Captum internal_batch_size (default: batch size x steps, one pass)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--b", type=float, default=2.0, help="B-cos alignment pressure")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SST-2 validation jsonl")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random classifier heads")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON results")
    return parser.parse_args()


def load_batch(path: Path, tokenizer, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    """The first ``batch_size`` sentences of ``path`` tokenised to ``seq_len`` (padded and truncated)."""
    with path.open() as lines:
        texts = [json.loads(line)["text"] for line, _ in zip(lines, range(batch_size))]
    if len(texts) < batch_size:
        raise ValueError(f"{path} holds only {len(texts)} sentences, fewer than --batch-size {batch_size}")
    encoded = tokenizer(texts, padding="max_length", max_length=seq_len, truncation=True, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def pad_reference(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """IG reference: [PAD] everywhere except the special tokens ([CLS], [SEP], [PAD]), which are kept."""
    special = torch.tensor(tokenizer.all_special_ids)
    keep = torch.isin(input_ids, special)
    reference = torch.where(keep, input_ids, torch.full_like(input_ids, tokenizer.pad_token_id))
    same = (reference == input_ids).all(dim=-1)
    if same.any():
        raise ValueError(f"IG reference equals the input for examples {same.nonzero().flatten().tolist()}: "
                         "they hold only special tokens and get all-zero attributions")
    return reference


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else an empty string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def machine_info(threads: int) -> dict:
    """Processor, core count and library versions of this run."""
    import captum
    import transformers

    return {
        "processor": platform.processor(),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "captum": captum.__version__,
    }


def timed(function: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def summarise(timings: dict[str, list[float]]) -> tuple[dict, dict]:
    """Per measurement median/min/count, and each ratio three ways: the median over rounds of the ratio of
    the two timings of the same round (paired: robust to load that comes and goes), the ratio of the
    medians, and the ratio of the minima."""
    stats = {name: {"median_s": statistics.median(values), "min_s": min(values), "n": len(values)}
             for name, values in timings.items()}
    ratios = {}
    for name, (numerator, denominator) in RATIOS.items():
        per_round = [a / b for a, b in zip(timings[numerator], timings[denominator])]
        ratios[name] = {
            "paired_median": statistics.median(per_round),
            "of_medians": stats[numerator]["median_s"] / stats[denominator]["median_s"],
            "of_minima": stats[numerator]["min_s"] / stats[denominator]["min_s"],
            "per_round": per_round,
        }
    return stats, ratios


def check_goals(ratios: dict) -> dict:
    """Whether each goal of issue 2 is met by the paired median ratio."""
    results = {}
    for name, (_, _, bound, sense) in GOALS.items():
        value = ratios[name]["paired_median"]
        met = value <= bound if sense == "<=" else value >= bound
        results[name] = {"goal": f"{sense} {bound:g}", "paired_median": value, "met": met}
    return results


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    tokenizer = bcos.load_tokenizer(MODEL_ID)
    conventional = bcos.load_model(MODEL_ID, task="sequence-classification", num_labels=2).eval()
    bcos_model = bcos.bcosify(copy.deepcopy(conventional), b=args.b).eval()
    batch = load_batch(args.data, tokenizer, args.batch_size, args.seq_len)
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]

    def forward(model: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=input_ids, attention_mask=attention_mask).logits

    def explanation_mode_forward() -> torch.Tensor:
        with torch.enable_grad(), bcos.explanation_mode():
            return bcos_model(input_ids=input_ids, attention_mask=attention_mask).logits

    conventional_prediction = forward(conventional).argmax(dim=-1)
    reference = pad_reference(input_ids, tokenizer)
    ig_internal_batch = args.ig_internal_batch_size or args.batch_size * args.ig_steps

    def conventional_logits(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return conventional(input_ids=ids, attention_mask=mask).logits

    ig = LayerIntegratedGradients(conventional_logits, conventional.bert.embeddings.word_embeddings)

    def integrated_gradients() -> torch.Tensor:
        return ig.attribute(input_ids, baselines=reference, target=conventional_prediction,
                            additional_forward_args=(attention_mask,), n_steps=args.ig_steps,
                            internal_batch_size=ig_internal_batch)

    cheap: dict[str, Callable[[], object]] = {
        "conventional_forward": lambda: forward(conventional),
        "bcos_forward": lambda: forward(bcos_model),
        "bcos_explanation_mode_forward": explanation_mode_forward,
        "bcos_explain": lambda: bcos.explain(bcos_model, input_ids, attention_mask),
        "bcos_explain_all": lambda: bcos.explain(bcos_model, input_ids, attention_mask, target="all"),
    }

    def settle() -> None:
        """Untimed calls of the cheap measurements: the first ones after IG's large allocations are slow."""
        for function in cheap.values():
            function()

    print(f"warm-up ({', '.join(cheap)}, integrated_gradients)", flush=True)
    settle()
    integrated_gradients()
    settle()

    timings: dict[str, list[float]] = {name: [] for name in [*cheap, "integrated_gradients"]}
    load_average: list[float] = []
    for round_index in tqdm(range(args.repeats), desc="rounds", unit="round"):
        load_average.append(os.getloadavg()[0])
        for name, function in cheap.items():
            timings[name].append(timed(function))
        if round_index < args.ig_repeats:
            timings["integrated_gradients"].append(timed(integrated_gradients))
            settle()

    one = bcos.explain(bcos_model, input_ids, attention_mask)
    every = bcos.explain(bcos_model, input_ids, attention_mask, target="all")
    with torch.no_grad():
        bcos_logits = bcos_model(input_ids=input_ids, attention_mask=attention_mask).logits
    completeness = {
        "predicted_class_max_relative_error": one.completeness_error().max().item(),
        "predicted_class_max_abs_error": (one.contributions.sum(-1) - one.logit).abs().max().item(),
        "explained_logit_abs_min_max": [one.logit.abs().min().item(), one.logit.abs().max().item()],
        "all_classes_max_relative_error": every.completeness_error().max().item(),
        "explained_logit_matches_no_grad_forward_max_abs": (one.logit - bcos_logits.gather(
            1, one.target[:, None]).squeeze(1)).abs().max().item(),
        "dtype": str(one.contributions.dtype),
    }

    stats, ratios = summarise(timings)
    result = {
        "benchmark": "explain_cost (issue 2)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(args.threads),
        "settings": {
            "model": MODEL_ID,
            "num_labels": 2,
            "classifier_head": f"random init (torch seed {args.seed})",
            "b": args.b,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "data": str(args.data),
            "non_padding_tokens": int(attention_mask.sum()),
            "repeats": args.repeats,
            "ig_repeats": min(args.ig_repeats, args.repeats),
            "ig_steps": args.ig_steps,
            "ig_internal_batch_size": ig_internal_batch,
            "ig_layer": "bert.embeddings.word_embeddings",
            "ig_reference": "[PAD] everywhere, special tokens ([CLS]/[SEP]/[PAD]) kept",
            "ig_target": "predicted class of the conventional model",
            "bcos_explain_target": "predicted class of the B-cos model",
            "ratios": "paired_median (the reported value; goals use it), of_medians, of_minima",
            "schedule": ("one warm-up call of each; then rounds that time each cheap measurement once in turn, "
                         "the first ig_repeats rounds then time IG followed by one untimed call of each cheap "
                         "measurement (the first calls after IG's large allocations are slow)"),
        },
        "timings_s": timings,
        "load_average_1min_per_round": load_average,
        "stats": stats,
        "ratios": ratios,
        "goals": check_goals(ratios),
        "completeness": completeness,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{'measurement':<32}{'median ms':>12}{'min ms':>10}{'n':>4}")
    for name, values in stats.items():
        print(f"{name:<32}{values['median_s'] * 1e3:>12.1f}{values['min_s'] * 1e3:>10.1f}{values['n']:>4}")
    print(f"\n{'ratio':<50}{'paired':>8}{'medians':>9}{'minima':>8}")
    for name, values in ratios.items():
        print(f"{name:<50}{values['paired_median']:>8.2f}{values['of_medians']:>9.2f}{values['of_minima']:>8.2f}")
    for name, goal in result["goals"].items():
        print(f"goal {name} {goal['goal']}: {'met' if goal['met'] else 'MISSED'}")
    print(f"completeness error (max relative): {completeness['predicted_class_max_relative_error']:.2e}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
