"""GPU check (issue 13): completeness of every supported architecture on the device in float32 and bfloat16, and
the speed of B-cos explanations and training steps at real model sizes.

1. **Completeness**: ``bcos.verify`` of a tiny random B-cos model of every (architecture, head) that bcosify
   supports (the test suite's tiny configs), moved to the device, in float32 and in bfloat16 (tolerances
   ``bcos.verification.COMPLETENESS_TOLERANCES``: 1e-3 and 0.3 of Σ|c|).
2. **Speed**, random weights of real shapes (weights do not change speed): a bert-base-sized encoder classifier
   (BERT, 110M, batch 32 × 128 tokens) and a 1B-sized decoder (Llama 3.2 1B's shape, batch 8 × 256 tokens):
   B-cos explanations per second (``bcos.explain`` of the predicted class / next token, float32) and the time of
   one training step (forward, loss, backward, AdamW; bf16 autocast on CUDA) of the B-cos model over that of the
   conventional model it was converted from, measured alternately so that both see the same machine state.

Writes one JSON file. On a CUDA machine (about 2-3 minutes on one GPU)::

    python benchmarks/gpu.py --out benchmarks/results/gpu.json

``--device cpu --tiny`` runs the same on the CPU with the tiny configs everywhere (a smoke test, part of the suite).
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import transformers
from torch import nn
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]  # this checkout's bcos and the tiny test configs

import bcos  # noqa: E402
from tiny_models import ARCHITECTURES, tiny_batch, tiny_model  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: the two speed cases: a transformers config, the model class, and the batch shape (examples, tokens)
REAL_SHAPES = {
    "bert-base encoder": (lambda: transformers.BertConfig(), "BertForSequenceClassification", (32, 128)),
    "1B decoder": (lambda: transformers.LlamaConfig(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, max_position_embeddings=2048, tie_word_embeddings=True), "LlamaForCausalLM", (8, 256)),
}
TINY_SHAPES = {"tiny encoder": ("bert", "BertForSequenceClassification", (4, 9)),
               "tiny decoder": ("llama", "LlamaForCausalLM", (4, 9))}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def completeness(device: torch.device) -> list[dict]:
    """``bcos.verify`` of every architecture's tiny B-cos model on ``device`` in each of :data:`DTYPES`."""
    rows = []
    for model_type, class_name in tqdm(ARCHITECTURES, desc="completeness", unit="architecture"):
        converted = bcos.bcosify(tiny_model(model_type, class_name), b=1.5)
        for dtype_name, dtype in DTYPES.items():
            report = bcos.verify(copy.deepcopy(converted).to(device=device, dtype=dtype))
            rows.append({"architecture": class_name, "dtype": dtype_name, "passed": report.passed,
                         "completeness_error": report.completeness_error,
                         "tolerance": report.completeness_tolerance})
    return rows


def speed_models(name: str, tiny: bool, device: torch.device) -> tuple[nn.Module, nn.Module, tuple[int, int]]:
    """The conventional model of a speed case, its B-cos conversion (b=1.5) and the batch shape."""
    if tiny:
        model_type, class_name, shape = TINY_SHAPES[name]
        conventional = tiny_model(model_type, class_name, num_labels=2)
    else:
        config_factory, class_name, shape = REAL_SHAPES[name]
        config = config_factory()
        config.num_labels = 2
        with torch.device(device):
            conventional = getattr(transformers, class_name)(config)
    conventional = conventional.to(device).eval()
    return conventional, bcos.bcosify(copy.deepcopy(conventional), b=1.5), shape


def random_batch(model: nn.Module, shape: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[examples, tokens]`` random ids (avoiding the first special ids) and a mask without padding."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, shape, generator=generator)
    return ids.to(device), torch.ones_like(ids)


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor, mask: torch.Tensor,
                  device: torch.device) -> None:
    """One step of the task's usual loss: next-token cross-entropy for a decoder, BCE on class 0 otherwise."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    if logits.dim() == 3:
        loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    else:
        loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def timed(function: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def speed(name: str, tiny: bool, device: torch.device, rounds: int) -> dict:
    """Explanations per second of the B-cos model and its training-step time over the conventional one's."""
    conventional, converted, shape = speed_models(name, tiny, device)
    ids, mask = random_batch(conventional, shape, device)
    explain_times = [timed(lambda: bcos.explain(converted, ids, mask), device) for _ in range(rounds + 1)][1:]
    explanation = bcos.explain(converted, ids, mask)
    step_times: dict[str, list[float]] = {"conventional": [], "bcos": []}
    models = {"conventional": conventional.train(), "bcos": converted.train()}
    optimizers = {key: torch.optim.AdamW(model.parameters(), lr=1e-5) for key, model in models.items()}
    for round_index in range(rounds + 1):  # alternate the two; the first round warms up
        for key, model in models.items():
            seconds = timed(lambda: training_step(model, optimizers[key], ids, mask, device), device)
            if round_index:
                step_times[key].append(seconds)
    median = {key: statistics.median(values) for key, values in step_times.items()}
    return {"case": name, "model": type(conventional).__name__,
            "parameters": sum(p.numel() for p in conventional.parameters()), "batch": list(shape),
            "explanations_per_second": shape[0] / statistics.median(explain_times),
            "explanation_completeness_error": float(explanation.completeness_error().max()),
            "step_seconds": median, "step_time_ratio_bcos_over_conventional": median["bcos"] / median["conventional"],
            "rounds": rounds}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny configs for the speed cases too (a smoke test)")
    parser.add_argument("--rounds", type=int, default=5, help="timed repetitions per measurement (after one warm-up)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.json"))
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device; run with --device cpu --tiny for the smoke test")
    device = torch.device(args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    checks = completeness(device)
    cases = TINY_SHAPES if args.tiny else REAL_SHAPES
    speeds = [speed(name, args.tiny, device, args.rounds) for name in tqdm(cases, desc="speed", unit="model")]
    result = {
        "command": "python benchmarks/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "completeness": checks, "all_complete": all(row["passed"] for row in checks), "speed": speeds,
        "seconds": time.perf_counter() - started,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}: {sum(row['passed'] for row in checks)}/{len(checks)} completeness checks passed; "
          + "; ".join(f"{row['case']}: {row['explanations_per_second']:.1f} explanations/s, step ratio "
                      f"{row['step_time_ratio_bcos_over_conventional']:.2f}" for row in speeds))
    return result


if __name__ == "__main__":
    main()
