"""Why does a directly converted B-cos model need a 10-20x learning rate? A forward-only probe (issue 10).

For MiniLM on SST-2 validation sentences, measures per transformer block how large the attention and FFN branches
are against the residual stream they are added to (``‖branch(x)‖ / ‖x‖``, mean over real tokens), for the
pre-trained model and for direct B-cos conversions (b = 1.25, 1.5, 2; weights normalised or not; normalised with
output gains calibrated on the same sentences, ``bcos.calibrate_output_gains``). It also records
the RMS of the classifier logits, the mean |cos(x, w)| seen by the B-cos layers, and the row norms of the
pre-trained weights (with normalised rows an Adam step of size lr turns a row by about lr·sqrt(fan-in)/‖w‖).

    python benchmarks/branch_scale_probe.py --out benchmarks/results/branch_scale_probe.json
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

import torch
from torch import nn

import bcos
from bcos.nn import BcosLinear
from datamodules import TextClassificationDataModule

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def branch_ratios(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """``‖branch‖ / ‖residual‖`` per block for the attention and the FFN branch (mean over real tokens)."""
    mask = batch["attention_mask"].bool()
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    for index, layer in enumerate(model.bert.encoder.layer):
        hooks.append(layer.register_forward_pre_hook(
            lambda m, args, kwargs, i=index: captured.__setitem__(f"in{i}", args[0] if args else kwargs["hidden_states"]),
            with_kwargs=True))
        hooks.append(layer.attention.output.dense.register_forward_hook(
            lambda m, args, out, i=index: captured.__setitem__(f"attn{i}", out)))
        hooks.append(layer.attention.output.LayerNorm.register_forward_hook(
            lambda m, args, out, i=index: captured.__setitem__(f"mid{i}", out)))
        hooks.append(layer.output.dense.register_forward_hook(
            lambda m, args, out, i=index: captured.__setitem__(f"ffn{i}", out)))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    for hook in hooks:
        hook.remove()

    def ratio(branch: torch.Tensor, residual: torch.Tensor) -> float:
        return (branch.norm(dim=-1) / residual.norm(dim=-1))[mask].mean().item()

    blocks = len(model.bert.encoder.layer)
    return {"attention": [ratio(captured[f"attn{i}"], captured[f"in{i}"]) for i in range(blocks)],
            "ffn": [ratio(captured[f"ffn{i}"], captured[f"mid{i}"]) for i in range(blocks)],
            "logit_rms": logits.square().mean().sqrt().item()}


def mean_abs_cos(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """Mean |cos(x, w)| over the outputs of every B-cos layer (real tokens only)."""
    values: list[float] = []
    mask = batch["attention_mask"].bool()

    def record(module: BcosLinear, args: tuple, out: torch.Tensor) -> None:
        x = args[0]
        cos = nn.functional.linear(x, nn.functional.normalize(module.weight, dim=1)) / x.norm(dim=-1, keepdim=True)
        values.append((cos.abs()[mask] if cos.dim() == 3 else cos.abs()).mean().item())

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, BcosLinear)]
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for hook in hooks:
        hook.remove()
    return statistics.mean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=128, help="first N SST-2 validation sentences")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/branch_scale_probe.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    data = TextClassificationDataModule(dataset="sst2", tokenizer=MODEL, max_length=64, batch_size=32,
                                        eval_batch_size=args.examples, seed=42)
    data.setup("validate")
    batch = next(iter(data.val_dataloader()))
    original = bcos.load_model(MODEL, num_labels=2).eval()
    rows = {"pre-trained": {**branch_ratios(original, batch)}}
    for b in (1.25, 1.5, 2.0):
        for normalize in (True, False):
            converted = bcos.bcosify(copy.deepcopy(original), b=b, normalize_weights=normalize).eval()
            rows[f"b={b} {'normalised' if normalize else 'raw weights'}"] = {
                **branch_ratios(converted, batch), "mean_abs_cos": mean_abs_cos(converted, batch)}
        gained = bcos.bcosify(copy.deepcopy(original), b=b, output_gains=True).eval()
        bcos.calibrate_output_gains(gained, lambda: gained(input_ids=batch["input_ids"],
                                                           attention_mask=batch["attention_mask"]))
        rows[f"b={b} normalised, output gains"] = {
            **branch_ratios(gained, batch), "mean_abs_cos": mean_abs_cos(gained, batch)}
    norms = [row.norm().item() for m in original.bert.encoder.modules() if isinstance(m, nn.Linear)
             for row in m.weight]
    fan_in = [m.in_features for m in original.bert.encoder.modules() if isinstance(m, nn.Linear)]
    report = {"benchmark": "branch_scale_probe", "model": MODEL, "examples": args.examples, "rows": rows,
              "encoder_weight_row_norm": {"median": statistics.median(norms), "min": min(norms), "max": max(norms)},
              "encoder_fan_in": sorted(set(fan_in))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for name, row in rows.items():
        print(f"{name:>24}: attention {' '.join(f'{v:.3f}' for v in row['attention'])} | ffn "
              f"{' '.join(f'{v:.3f}' for v in row['ffn'])} | logit RMS {row['logit_rms']:.2e}"
              + (f" | mean|cos| {row['mean_abs_cos']:.3f}" if "mean_abs_cos" in row else ""))
    print("row norms", report["encoder_weight_row_norm"], "fan-in", report["encoder_fan_in"])


if __name__ == "__main__":
    main()
