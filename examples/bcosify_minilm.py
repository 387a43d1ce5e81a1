"""B-cosify the packaged MiniLM and explain a sentence: per-word contributions that sum to the logit.

    python examples/bcosify_minilm.py "a gripping, beautifully acted film" --out outputs/explanation.png

The classification head is freshly initialised (the model is not trained here), so the predicted class is
arbitrary; what this shows is the conversion and the exactness of the explanation.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import bcos  # noqa: E402

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", nargs="?", default="a gripping, beautifully acted film that never drags")
    parser.add_argument("--b", type=float, default=2.0, help="B of the B-cos layers")
    parser.add_argument("--out", type=Path, default=Path("outputs/explanation.png"), help="where to save the plot")
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = bcos.load_tokenizer(MODEL)
    model = bcos.bcosify(bcos.load_model(MODEL, num_labels=2).eval(), b=args.b)
    print("\n".join(str(model.bcos_report).splitlines()[:1] + str(model.bcos_report).splitlines()[-1:]))

    batch = tokenizer(args.text, return_tensors="pt")
    explanation = bcos.explain(model, batch["input_ids"], batch["attention_mask"])
    tokens = bcos.token_strings(explanation.input_ids, explanation.attention_mask, tokenizer)[0]
    words, scores = bcos.merge_subwords(tokens, explanation.contributions[0], set(tokenizer.all_special_tokens))

    print(f"\nexplained logit of class {explanation.target.item()}: {explanation.logit.item():+.6e}")
    print(f"sum of contributions:           {explanation.contributions.sum().item():+.6e} "
          f"(relative error {explanation.completeness_error().item():.1e})\n")
    for word, score in zip(words, scores):
        print(f"  {word:>15s} {score:+.3e}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    limit = max(abs(s) for s in scores)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(words)), 1.6))
    ax.imshow([scores], cmap="coolwarm", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(words)), words, rotation=45, ha="right")
    ax.set_yticks([])
    ax.set_title(f"B-cos contributions to class {explanation.target.item()} (sum = logit)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"\nplot written to {args.out}")


if __name__ == "__main__":
    main()
