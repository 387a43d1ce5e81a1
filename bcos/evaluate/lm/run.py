"""Competence and evidence alignment of decoders on minimal-pair suites, per subset and pooled per suite."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from ...explain import explainer_for
from ...handle import Model
from ...metrics import bootstrap_interval
from ...metrics.plausibility import nan_mean
from ..intervals import Bootstrap
from .pairs import encode_pairs, read_pairs
from .scoring import (competence, contrastive_attributions, evidence_alignment, next_token_log_probs,
                      random_reciprocal_rank)

ALL = "all"  # the subset name of the rows pooled over a suite's subsets


class Key(NamedTuple):
    """What a result row is about: competence of a model (``method`` None) or the alignment of a method on it."""

    suite: str
    subset: str
    model: str
    method: str | None = None


def methods_for(lm: Model, methods: Sequence[str], posthoc_on_bcos: bool) -> list[str]:
    """B-cos explains B-cos models only; post-hoc methods explain conventional models (B-cos ones too if asked)."""
    if lm.is_bcos:
        return [m for m in methods if m == "bcos" or posthoc_on_bcos]
    return [m for m in methods if m != "bcos"]


def evaluate_pairs(models: Mapping[str, Model], files: Mapping[tuple[str, str], Path], methods: Sequence[str],
                   method_params: Mapping[str, Mapping[str, Any]] | None = None, max_rows: int | None = None,
                   posthoc_on_bcos: bool = False, batch_size: int = 16, progress: bool = True,
                   bootstrap: Bootstrap = Bootstrap()) -> dict[str, Any]:
    """Score every model on every ``(suite, subset) -> file``.

    Returns ``{"skipped": [...], "competence": [...], "alignment": [...], "uncertainty": {...}}``: one row per subset
    (and one pooled over each suite's subsets, subset ``"all"``) with counts, accuracy of target over foil (with
    its ``bootstrap`` interval over the pairs, ``accuracy_low``/``_high``) and the mean probability gap per model,
    and the mean reciprocal rank (``mrr_low``/``_high``) and evidence share per model and method (method
    ``random``: the chance level of the reciprocal rank). The share's mean leaves out pairs without positive
    attribution; ``evidence_share_pairs`` counts the pairs it rests on.

    Raises:
        ValueError: the models tokenise differently (the skip counts and the chance level are per tokenizer).
    """
    vocabularies = {name: lm.tokenizer.get_vocab() for name, lm in models.items()}
    if any(vocabulary != next(iter(vocabularies.values())) for vocabulary in vocabularies.values()):
        raise ValueError(f"the models {sorted(models)} use different tokenizers; the pairs, their skip counts and "
                         "the chance level must mean the same tokens to every model: evaluate them separately")
    method_params = method_params or {}
    per_pair: dict[Key, dict[str, list[torch.Tensor]]] = {}
    seconds: dict[Key, float] = {}
    skipped_rows = []

    def collect(key: Key, values: Mapping[str, torch.Tensor]) -> None:
        for name, value in values.items():
            for group in (key, key._replace(subset=ALL)):
                per_pair.setdefault(group, {}).setdefault(name, []).append(value)

    for (suite, subset), file in files.items():
        rows = read_pairs(file, max_rows)
        for model_name, lm in models.items():
            pairs = encode_pairs(rows, lm.tokenizer)
            if model_name == next(iter(models)):
                skipped_rows.append({"suite": suite, "subset": subset, "n_rows": len(rows), "n_pairs": len(pairs),
                                     **pairs.skipped})
                collect(Key(suite, subset, "-", "random"), {"reciprocal_rank": random_reciprocal_rank(pairs),
                                                            "evidence_share": torch.full((len(pairs),), torch.nan)})
            if not len(pairs):
                continue
            collect(Key(suite, subset, model_name), competence(next_token_log_probs(lm, pairs, batch_size)))
            for method in methods_for(lm, methods, posthoc_on_bcos):
                explainer = explainer_for(lm, method, method_params.get(method))
                with tqdm(total=len(pairs), desc=f"{subset} {model_name} {method}", disable=not progress,
                          leave=False) as bar:
                    scores, spent = contrastive_attributions(explainer, pairs, batch_size, bar.update)
                key = Key(suite, subset, model_name, method)
                collect(key, evidence_alignment(scores, pairs))
                for group in (key, key._replace(subset=ALL)):
                    seconds[group] = seconds.get(group, 0.0) + spent

    for suite in dict.fromkeys(suite for suite, _ in files):
        suite_rows = [row for row in skipped_rows if row["suite"] == suite]
        pooled = {key: sum(row[key] for row in suite_rows) for key in suite_rows[0] if key not in ("suite", "subset")}
        skipped_rows.append({"suite": suite, "subset": ALL, **pooled})
    competence_rows, alignment_rows = [], []

    def interval(name: str, values: torch.Tensor) -> dict[str, float]:
        drawn = bootstrap_interval(values, bootstrap.level, bootstrap.resamples, bootstrap.seed)
        return {f"{name}_low": drawn.low, f"{name}_high": drawn.high}

    for key, values in per_pair.items():
        joined = {name: torch.cat(parts) for name, parts in values.items()}
        n = len(next(iter(joined.values())))
        if key.method is None:
            competence_rows.append({"suite": key.suite, "subset": key.subset, "model": key.model, "n_pairs": n,
                                    "accuracy": nan_mean(joined["correct"]),
                                    **interval("accuracy", joined["correct"]),
                                    "probability_gap": nan_mean(joined["probability_gap"])})
        else:
            alignment_rows.append({"suite": key.suite, "subset": key.subset, "model": key.model,
                                   "method": key.method, "n_pairs": n,
                                   "mrr": nan_mean(joined["reciprocal_rank"]),
                                   **interval("mrr", joined["reciprocal_rank"]),
                                   "evidence_share": nan_mean(joined["evidence_share"]),
                                   "evidence_share_pairs": int((~joined["evidence_share"].isnan()).sum()),
                                   "seconds_per_pair": seconds.get(key, 0.0) / n if n else float("nan")})
    order = {subset: i for i, subset in enumerate(dict.fromkeys(row["subset"] for row in skipped_rows))}
    for rows in (competence_rows, alignment_rows):
        rows.sort(key=lambda row: (row["suite"], row["subset"] == ALL, order.get(row["subset"], 0)))
    return {"skipped": skipped_rows, "competence": competence_rows, "alignment": alignment_rows,
            "uncertainty": bootstrap.describe()}
