"""Peak memory of Integrated Gradients on a B-cos MiniLM with and without the token bound of its passes.

    python benchmarks/ig_memory.py --out benchmarks/results/ig_memory.json

Each setting runs in a fresh process (peak resident memory, ``ru_maxrss``, is per process): one IG call on a
batch of random content tokens of the given length, on the B-cosified packaged MiniLM (CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(batch: int, length: int, n_steps: int, max_tokens: int | None) -> dict:
    import torch

    import bcos
    from bcos.explain import get_explainer

    torch.manual_seed(0)
    model = bcos.bcosify(bcos.load_model(MINILM, num_labels=2), b=2.0).eval()
    ids = torch.randint(1000, 20000, (batch, length))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    get_explainer("integrated_gradients", model, n_steps=n_steps, max_tokens_per_pass=max_tokens).attribute(ids, mask)
    return {"batch": batch, "length": length, "n_steps": n_steps, "max_tokens_per_pass": max_tokens,
            "seconds": time.perf_counter() - start, "rss_before_mib": before / 1024,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--steps", default="4,8", help="comma-separated n_steps")
    p.add_argument("--max-tokens", default="none,8192", help="comma-separated bounds ('none': one pass)")
    p.add_argument("--out", default=None)
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(*json.loads(args.one))))
        return
    runs = []
    for steps in map(int, args.steps.split(",")):
        for bound in args.max_tokens.split(","):
            setting = [args.batch, args.length, steps, None if bound == "none" else int(bound)]
            done = subprocess.run([sys.executable, __file__, "--one", json.dumps(setting)], capture_output=True,
                                  text=True, check=True, env={**os.environ, "PYTHONPATH": REPO})
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(runs[-1], flush=True)
    record = {"command": " ".join(["python", "benchmarks/ig_memory.py", *sys.argv[1:]]),
              "model": MINILM + " (bcosify b=2)",
              "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch threads from OMP_NUM_THREADS",
              "runs": runs}
    if args.out:
        with open(args.out, "w", encoding="utf-8") as file:
            json.dump(record, file, indent=1)


if __name__ == "__main__":
    main()
