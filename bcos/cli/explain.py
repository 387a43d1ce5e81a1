"""``python -m bcos.explain``: explain texts with a trained model; write token heatmaps (HTML or PNG) and the
scores (JSON).

    python -m bcos.explain --model runs/quickstart/version_0/hf_export --text "a gripping film" --out heatmap.html
    python -m bcos.explain --model runs/quickstart/version_0/checkpoints/last.ckpt --file inputs.txt \\
        --methods bcos,integrated_gradients,lime --out heatmaps.png

Models are anything :func:`bcos.load` reads: Hugging Face folders (a training run's ``hf_export/``; sequence
classifiers or causal language models), hub ids, or Lightning ``.ckpt`` files. Classifiers explain the predicted class
(or ``--target``, a class index or label, or ``all``); causal language models explain the predicted next token (or
``--target``, a text that is one token); ``--foil`` makes the explanation contrastive. The JSON next to ``--out``
holds every heatmap's tokens and scores.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..explain.protocol import Explainer
from ..explain.registry import EXPLAINERS, check_explainer_params, explainer_for
from ..explain.words import token_strings
from ..handle import Model
from ..loader import load
from ..viz import TokenHeatmap, write_html, write_png
from ..viz.heatmap import likeliest, token_name
from .common import (add_device, add_max_length, max_length_for, method_params, names, new_parser, positive_float,
                     provenance)

PROG = "python -m bcos.explain"
OUTPUT_SUFFIXES = (".html", ".png")


def parser() -> argparse.ArgumentParser:
    p = new_parser(PROG, __doc__)
    p.add_argument("--model", type=Path, required=True,
                   help="a Hugging Face model folder (a run's hf_export/), a hub id or a Lightning .ckpt")
    p.add_argument("--text", action="append", default=[], help="a text to explain (repeatable)")
    p.add_argument("--file", type=Path, help="a UTF-8 file of texts to explain, one per line (blank lines skipped)")
    p.add_argument("--out", type=Path, required=True, help="the heatmaps: a .html page or a .png image")
    p.add_argument("--methods", type=names, default=None,
                   help=f"comma-separated, of: {', '.join(EXPLAINERS)} (default: bcos for a B-cos model, else "
                   "integrated_gradients)")
    p.add_argument("--method-params", type=method_params, default={},
                   help='JSON of explainer parameters by method, e.g. \'{"lime": {"n_samples": 100}}\'')
    p.add_argument("--target", help="what to explain: a class index or label name, or 'all' (one row per class); "
                   "for language models a text that is one token, not 'all' (default: the prediction)")
    p.add_argument("--foil", help="explain the target's logit minus this one's (\"why the target rather than the "
                   "foil\"): a class index or label, or for language models a text that is one token")
    p.add_argument("--labels", type=lambda text: [name.strip() for name in text.split(",")], default=None,
                   help="comma-separated class names in class order, e.g. negative,positive (default: the model "
                   "config's id2label)")
    p.add_argument("--words", action="store_true", help="draw words (subword scores summed) instead of tokens")
    p.add_argument("--hide-special", action="store_true",
                   help="leave special tokens ([CLS], [SEP], ...) out of the drawings (the JSON keeps them)")
    p.add_argument("--png", action="store_true", help="also write a PNG next to an .html --out")
    p.add_argument("--json", type=Path, default=None, help="where to write the scores (default: --out with .json)")
    add_max_length(p, "tokens per text (longer texts are truncated: on the right for classifiers, on the left for "
                   "language models, so that the explained prediction is the one after the text)")
    p.add_argument("--logit-scale", type=positive_float, default=None,
                   help="inverse temperature of the shown probabilities (default: the one the model was trained "
                   "with, else 1)")
    add_device(p)
    return p


def read_inputs(texts: Sequence[str], file: Path | None) -> list[str]:
    """The texts to explain: ``texts``, then the non-blank lines of ``file``.

    Raises:
        ValueError: no input, an empty ``--text``, or a file without text.
        FileNotFoundError: ``file`` does not exist.
    """
    if not texts and file is None:
        raise ValueError("no input: give --text \"...\" or --file inputs.txt")
    if any(not text.strip() for text in texts):
        raise ValueError("empty input: a --text is empty; give the text to explain")
    inputs = list(texts)
    if file is not None:
        if not file.is_file():
            raise FileNotFoundError(f"input file not found: {file}")
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"empty input: {file} has no text; write one text per line")
        inputs += lines
    return inputs


def check_methods(methods: Sequence[str], method_params: dict[str, Any], classifier: Model) -> None:
    """Raises ValueError for unknown methods (in ``--methods`` or ``--method-params``) and for ``bcos`` on a
    conventional model."""
    unknown = [name for name in [*methods, *method_params] if name not in EXPLAINERS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; known methods: {', '.join(EXPLAINERS)}")
    if "bcos" in methods and not classifier.is_bcos:
        raise ValueError(f"method bcos needs a B-cos model, but {classifier.source} holds a conventional model; "
                         "explain it with post-hoc methods, e.g. --methods integrated_gradients,lime")


def build_explainers(classifier: Model, methods: Sequence[str],
                     method_params: dict[str, Any]) -> dict[str, Explainer]:
    """The explainers by method; raises ValueError naming the method whose parameters it does not take."""
    explainers = {}
    for method in methods:
        try:
            check_explainer_params(method, method_params.get(method) or {})
        except ValueError as error:
            raise ValueError(f"--method-params for {method}: {error}") from error
        explainers[method] = explainer_for(classifier, method, method_params.get(method))
    return explainers


def name_classes(classifier: Model, labels: list[str], language_model: bool) -> None:
    """Name the classifier's classes ``labels`` (its ``config.id2label``); raises ValueError if they do not fit."""
    if language_model:
        raise ValueError("--labels names the classes of a classifier; a language model's classes are its tokens")
    if len(labels) != classifier.model.config.num_labels:
        raise ValueError(f"--labels gives {len(labels)} names for a model with {classifier.model.config.num_labels} "
                         "classes")
    if not all(labels):
        raise ValueError(f"--labels has an empty name ({','.join(labels)!r}); give every class a name")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"--labels names {repeated[0]!r} more than once; give each class its own name")
    classifier.model.config.id2label = dict(enumerate(labels))


def namer(classifier: Model, language_model: bool) -> Callable[[int], str]:
    """How classes (``config.id2label``) or vocabulary items (decoded text) are shown."""
    if language_model:
        return lambda item: token_name(classifier.tokenizer, item)
    return lambda item: str(classifier.model.config.id2label.get(item, item))


def resolve(value: str | None, flag: str, classifier: Model, language_model: bool) -> list[int] | None:
    """``--target`` / ``--foil`` as class or vocabulary ids (None when not given; every class for ``--target
    all``); raises ValueError if ``value`` names nothing the model has."""
    if value is None:
        return None
    if language_model:
        if value == "all" and flag == "--target":
            raise ValueError("--target all (one row per class) is for classifiers; a language model's classes are its "
                             "whole vocabulary: give one token to explain, e.g. --target ' Paris' (for the word "
                             "'all', --target ' all')")
        ids = classifier.tokenizer(value, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{flag} {value!r} is {len(ids)} tokens for this tokenizer; a language model's "
                             f"{flag} must be exactly one token (mind the leading space, e.g. ' Paris')")
        return ids
    labels = {int(index): str(label) for index, label in classifier.model.config.id2label.items()}
    if value == "all" and flag == "--target":
        return sorted(labels)
    matches = [index for index, label in labels.items() if value in (str(index), label)]
    if not matches:
        known = ", ".join(f"{index} ({label})" for index, label in sorted(labels.items()))
        raise ValueError(f"unknown {flag} {value!r}; the model's classes are {known}"
                         + (", or 'all'" if flag == "--target" else ""))
    return matches[:1]


def explain_text(text: str, classifier: Model, explainers: dict[str, Explainer], targets: list[int] | None,
                 foil: int | None, max_length: int, name: Callable[[int], str], language_model: bool) -> TokenHeatmap:
    """The heatmap of ``text``: one row per method (per method and class when several targets are given); with a
    ``foil``, of the contrast ``logit[target] - logit[foil]``."""
    batch = classifier.tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    ids, mask = batch["input_ids"].to(classifier.device), batch["attention_mask"].to(classifier.device)
    with torch.no_grad():
        logits = next(iter(explainers.values())).logits(ids, mask)[0]
    probabilities = classifier.probabilities(logits)
    prediction = int(probabilities.argmax())
    rows = {}
    for method, explainer in explainers.items():
        for target in targets or [prediction]:
            label = method if targets is None or len(targets) == 1 else f"{method}: {name(target)}"
            rows[label] = explainer.attribute(ids, mask, target, foil).scores[0]
    explained = ("every class" if targets is not None and len(targets) > 1
                 else name(prediction if targets is None else targets[0]))
    if foil is not None:
        explained += f" rather than {name(foil)}"
    return TokenHeatmap(token_strings(ids, mask, classifier.tokenizer)[0], rows, text, explained, name(prediction),
                        likeliest(probabilities, name, 5 if language_model else None))


def output_paths(args: argparse.Namespace) -> dict[str, Path]:
    """The files the command writes, by format (``html``, ``png``, ``json``).

    Raises:
        ValueError: ``--out`` is neither .html nor .png, or two outputs are the same file (``--json`` = ``--out``).
    """
    if args.out.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out {args.out} must end in .html or .png")
    paths = {}
    if args.out.suffix == ".html":
        paths["html"] = args.out
    if args.out.suffix == ".png" or args.png:
        paths["png"] = args.out.with_suffix(".png")
    heatmaps = {path.resolve(): path for path in paths.values()}
    paths["json"] = args.json or args.out.with_suffix(".json")
    if paths["json"].resolve() in heatmaps:
        raise ValueError(f"--json {args.json} is also where the heatmaps go ({heatmaps[paths['json'].resolve()]}); "
                         "give the scores another file, e.g. --json scores.json")
    return paths


def write_outputs(heatmaps: list[TokenHeatmap], args: argparse.Namespace, record: dict[str, Any],
                  special_tokens: set[str]) -> list[Path]:
    """Write the heatmaps (HTML and/or PNG; words with ``--words``, without special tokens with ``--hide-special``)
    and the JSON record to :func:`output_paths`; returns the paths."""
    drawn = [heatmap.words(special_tokens) for heatmap in heatmaps] if args.words else heatmaps
    drawn = [heatmap.without(special_tokens) for heatmap in drawn] if args.hide_special else drawn
    title = f"Explanations of {args.model}"
    paths = output_paths(args)
    files = []
    if "html" in paths:
        files.append(write_html(drawn, paths["html"], title))
    if "png" in paths:
        files.append(write_png(drawn, paths["png"]))
    json_path = paths["json"]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return [*files, json_path]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the command on ``argv`` (default: the command line); returns the JSON record it wrote, with ``files``.
    Bad inputs exit with a usage error (status 2) that says what is wrong and what to do."""
    p = parser()
    args = p.parse_args(argv)
    try:
        output_paths(args)
        texts = read_inputs(args.text, args.file)
        classifier = load(args.model, logit_scale=args.logit_scale)
        language_model = classifier.is_causal
        if args.labels is not None:
            name_classes(classifier, args.labels, language_model)
        methods = args.methods or ["bcos" if classifier.is_bcos else "integrated_gradients"]
        check_methods(methods, args.method_params, classifier)
        targets = resolve(args.target, "--target", classifier, language_model)
        foil = resolve(args.foil, "--foil", classifier, language_model)
        if foil is not None and targets is not None and len(targets) > 1:
            raise ValueError("--foil explains one contrast: give one --target (not 'all') with it")
        explainers = build_explainers(classifier, methods, args.method_params)
    except (ValueError, FileNotFoundError) as error:
        p.error(str(error))
    classifier.model.to(args.device)
    name = namer(classifier, language_model)
    foil_id = None if foil is None else foil[0]
    max_length = max_length_for(args.max_length, classifier)
    heatmaps = [explain_text(text, classifier, explainers, targets, foil_id, max_length, name, language_model)
                for text in tqdm(texts, desc="explaining", unit="text", disable=len(texts) < 2)]
    record = {"model": str(args.model), "methods": methods, "logit_scale": classifier.logit_scale,
              "link_function": classifier.link, "max_length": max_length,
              "inputs": [heatmap.to_dict() for heatmap in heatmaps], **provenance(PROG, argv)}
    files = write_outputs(heatmaps, args, record, set(classifier.tokenizer.all_special_tokens))
    for path in files:
        print(f"wrote {path}")
    return {**record, "files": [str(path) for path in files]}
