"""SmolLM2-135M-Instruct, original vs B-cos (b = 1.1) after a short continued training, on one CPU thread.

    OMP_NUM_THREADS=1 BCOS_DATA_DIR=../shared/data python benchmarks/lm_compare.py --steps 150 --max-rows 20

1. Continued next-token training of the B-cos model on blocks of text of the local datasets (SST-2, AG News,
   IMDB, HateXplain); tokens per second of B-cos and of conventional training (a few timed steps of the original).
2. Held-out perplexity of both models on the same held-out blocks.
3. BLiMP and IOI (``bcos.evaluate.lm``): target-over-foil accuracy and probability gap of both models, and the
   evidence alignment of every method's contrastive explanation (B-cos on the B-cos model, post-hoc methods on
   the original).
4. Tokens per second of greedy generation with an exact explanation of every token (B-cos), next to plain greedy
   generation of the same model (``generate``, KV cache).

The results JSON is rewritten after every stage (``--out``), so a run cut short keeps what it measured.

``--paired-speed-rounds N`` only measures the training speed of both models side by side (rounds of
``--paired-steps`` steps of each in turn, same batches, plain AdamW loop) and adds it to ``--out`` as
``training_paired``: the ratio is then comparable even when other jobs share the machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
import transformers

from bcos import Model, load_tokenizer
from bcos.evaluate.lm import evaluate_pairs, suite_files
from bcos.evaluate.lm.report import write_report
from bcos.explain import generate_explained
from datamodules import LanguageModelingDataModule
from lightning_modules import CausalLanguageModel
from lightning_modules.causal_lm import next_token_loss

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
DATASETS = ["sst2", "ag_news", "imdb", "hatexplain"]
METHODS = ["bcos", "input_x_gradient", "saliency", "integrated_gradients", "occlusion"]
PROMPTS = ["The capital of France is", "When Mary and John went to the store, John gave a drink to",
           "The movie was"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=150, help="B-cos training steps")
    p.add_argument("--conventional-steps", type=int, default=10, help="timed training steps of the original model")
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--eval-blocks", type=int, default=32, help="held-out blocks for perplexity")
    p.add_argument("--max-rows", type=int, default=20, help="rows per BLiMP subset / of IOI (before skipping)")
    p.add_argument("--ig-steps", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=12, help="generated tokens per prompt")
    p.add_argument("--out", default="benchmarks/results/lm_compare.json")
    p.add_argument("--export", default="runs/lm_compare/bcos_export", help="where the trained B-cos model is saved")
    p.add_argument("--paired-speed-rounds", type=int, default=0,
                   help="only measure paired training speed: this many rounds (0: the whole benchmark)")
    p.add_argument("--paired-steps", type=int, default=3, help="steps of each model per paired round")
    return p.parse_args()


class StepClock(L.Callback):
    """Wall time of the optimisation steps after the first (which includes warm-up costs)."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.steps = 0
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        if self.start is None:
            self.start = time.perf_counter()
        else:
            self.steps += 1

    def seconds(self) -> float:
        return time.perf_counter() - self.start


def train(module: CausalLanguageModel, data: LanguageModelingDataModule, steps: int) -> dict:
    """Fit ``steps`` steps; tokens per second over the steps after the first, and the loss curve."""
    clock = StepClock()
    L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, limit_val_batches=0,
              enable_model_summary=False, callbacks=[clock]).fit(module, datamodule=data)
    tokens = clock.steps * data.hparams.batch_size * data.hparams.block_size
    losses = clock.losses
    return {"steps": steps, "tokens_per_second": tokens / clock.seconds(), "seconds": clock.seconds(),
            "first_loss": losses[0], "last_10_mean_loss": sum(losses[-10:]) / len(losses[-10:]),
            "losses_every_10": losses[::10]}


def paired_training_speed(blocks: torch.Tensor, batch_size: int, rounds: int, steps: int) -> dict:
    """Tokens per second of conventional and B-cos training steps timed in turn on the same batches (after one
    untimed step of each): per-round values and the median ratio."""
    models = {"conventional": CausalLanguageModel(MODEL, bcos=False).model.train(),
              "bcos": CausalLanguageModel(MODEL, b=1.1).model.train()}
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-5) for name, model in models.items()}
    batches = blocks[:batch_size * steps].split(batch_size)

    def run(name: str, batches: tuple[torch.Tensor, ...]) -> float:
        start = time.perf_counter()
        for batch in batches:
            mask = torch.ones_like(batch)
            next_token_loss(models[name](input_ids=batch).logits, batch, mask).backward()
            optimizers[name].step()
            optimizers[name].zero_grad()
        return batch_size * blocks.shape[1] * len(batches) / (time.perf_counter() - start)

    for name in models:
        run(name, batches[:1])
    speeds = {name: [] for name in models}
    for _ in range(rounds):
        for name in models:
            speeds[name].append(run(name, batches))
    ratios = [b / c for b, c in zip(speeds["bcos"], speeds["conventional"])]
    return {"rounds": rounds, "steps_per_round": steps, "tokens_per_second": speeds,
            "bcos_over_conventional_tokens_per_second_median": statistics.median(ratios)}


@torch.no_grad()
def perplexity(model: torch.nn.Module, blocks: torch.Tensor, logit_scale: float) -> float:
    """exp(mean next-token cross-entropy) of ``softmax(logits · logit_scale)`` over ``blocks [n, T]``."""
    model.eval()
    total, count = 0.0, 0
    for block in blocks.split(8):
        mask = torch.ones_like(block)
        total += float(next_token_loss(model(input_ids=block).logits * logit_scale, block, mask, "sum"))
        count += block.numel() - block.shape[0]
    return math.exp(total / count)


def generation_speed(model: torch.nn.Module, tokenizer, new_tokens: int) -> dict:
    """Tokens per second of explained greedy generation and of plain greedy ``generate``, one prompt at a time."""
    explained_seconds = plain_seconds = 0.0
    completeness, texts = [], []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        start = time.perf_counter()
        out = generate_explained(model, ids, max_new_tokens=new_tokens, eos_token_id=-1)
        explained_seconds += time.perf_counter() - start
        completeness.append(float(out.completeness_error().max()))
        texts.append(tokenizer.decode(out.target[0]))
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id)
        plain_seconds += time.perf_counter() - start
    n = new_tokens * len(PROMPTS)
    return {"explained_tokens_per_second": n / explained_seconds, "plain_generate_tokens_per_second": n / plain_seconds,
            "max_completeness_error": max(completeness), "generated": dict(zip(PROMPTS, texts))}


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict = {"settings": {**vars(args), "model": MODEL, "datasets": DATASETS, "b": 1.1, "methods": METHODS},
                    "machine": {"platform": platform.platform(),
                                "processor": platform.processor() or platform.machine(),
                                "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                                "transformers": transformers.__version__},
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def save(stage: str) -> None:
        report["completed_stages"] = [*report.get("completed_stages", []), stage]
        out.write_text(json.dumps(report, indent=1, default=str))
        print(f"[{datetime.now(timezone.utc):%H:%M:%S}] {stage} done -> {out}", flush=True)

    data = LanguageModelingDataModule(DATASETS, MODEL, block_size=args.block_size, batch_size=args.batch_size,
                                      max_train_blocks=args.steps * args.batch_size, max_eval_blocks=args.eval_blocks)
    data.setup()
    if args.paired_speed_rounds:
        report = json.loads(out.read_text()) if out.is_file() else report
        load_before = os.getloadavg()
        report["training_paired"] = {**paired_training_speed(data.blocks["train"], args.batch_size,
                                                             args.paired_speed_rounds, args.paired_steps),
                                     "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                     "load_average_before_after": [load_before, os.getloadavg()]}
        save("paired training speed")
        return
    held_out = data.blocks["validation"]
    report["data"] = {"train_blocks": data.blocks["train"].shape[0], "held_out_blocks": held_out.shape[0],
                      "block_size": args.block_size}

    original = CausalLanguageModel(MODEL, bcos=False, learning_rate=args.learning_rate)
    report["perplexity"] = {"original": perplexity(original.model, held_out, 1.0)}
    save("original perplexity")
    original.train()
    report["training"] = {"conventional": train(original, data, args.conventional_steps)}
    del original
    save("conventional training speed")

    bcos_module = CausalLanguageModel(MODEL, b=1.1, learning_rate=args.learning_rate)
    report["settings"]["normalize_weights"] = bcos_module.hparams.normalize_weights
    report["perplexity"]["bcos_before_training"] = perplexity(bcos_module.model, held_out, 1.0)
    bcos_module.train()
    report["training"]["bcos"] = train(bcos_module, data, args.steps)
    report["training"]["bcos_over_conventional_tokens_per_second"] = (
        report["training"]["bcos"]["tokens_per_second"] / report["training"]["conventional"]["tokens_per_second"])
    bcos_model = bcos_module.model.eval()
    report["perplexity"]["bcos"] = perplexity(bcos_model, held_out, 1.0)
    bcos_model.save_pretrained(args.export)
    data.tokenizer.save_pretrained(args.export)
    save("B-cos training and perplexity")

    tokenizer = load_tokenizer(MODEL)
    models = {"original": Model(CausalLanguageModel(MODEL, bcos=False).model.eval(), tokenizer, 1.0, MODEL),
              "bcos": Model(bcos_model, tokenizer, 1.0, args.export)}
    files = {(suite, subset): file for suite in ("blimp", "ioi") for subset, file in suite_files(suite).items()}
    results = evaluate_pairs(models, files, METHODS, {"integrated_gradients": {"n_steps": args.ig_steps}},
                             args.max_rows)
    write_report(out.with_suffix(""), results)
    pooled = [row for row in results["competence"] + results["alignment"] if row["subset"] == "all"]
    report["minimal_pairs"] = {"pooled": pooled, "skipped": results["skipped"],
                               "per_subset_tables": str(out.with_suffix("") / "results.md")}
    save("BLiMP and IOI")

    report["generation"] = generation_speed(bcos_model, tokenizer, args.new_tokens)
    save("explained generation")


if __name__ == "__main__":
    main()
