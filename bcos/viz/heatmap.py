"""What a token heatmap shows: tokens, one row of scores per method or class, and the prediction."""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..explain.bcos_explanation import Explanation
from ..explain.words import merge_subwords, token_strings
from .html import heatmap_fragment

Scores = Sequence[float] | torch.Tensor


@dataclass
class TokenHeatmap:
    """Scores of the tokens of one input.

    Attributes:
        tokens: the ``seq`` token (or word) strings of the input, padding left out.
        rows: row label (a method or a class) -> ``seq`` scores (tensors are converted to float lists).
        title: a heading, e.g. the input text.
        target: what the scores explain, e.g. ``"positive"`` or ``"' Paris' rather than ' London'"``.
        prediction: the model's prediction.
        probabilities: label -> probability, in display order (every class, or the likeliest next tokens).
    """

    tokens: list[str]
    rows: dict[str, list[float]]
    title: str = ""
    target: str = ""
    prediction: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tokens = [str(token) for token in self.tokens]
        self.rows = {str(label): _floats(scores) for label, scores in self.rows.items()}
        if not self.rows:
            raise ValueError("a heatmap needs at least one row of scores")
        for label, scores in self.rows.items():
            if len(scores) != len(self.tokens):
                raise ValueError(f"row {label!r} has {len(scores)} scores for {len(self.tokens)} tokens")
        self.probabilities = {str(label): float(p) for label, p in self.probabilities.items()}

    def words(self, special_tokens: Collection[str] = frozenset()) -> TokenHeatmap:
        """The word-level heatmap: subword tokens merged into words, their scores summed (see
        :func:`bcos.explain.merge_subwords`; ``special_tokens`` stay words of their own)."""
        special = frozenset(special_tokens)
        merged = {label: merge_subwords(self.tokens, scores, special) for label, scores in self.rows.items()}
        words = next(iter(merged.values()))[0]
        return TokenHeatmap(words, {label: scores for label, (_, scores) in merged.items()}, self.title, self.target,
                            self.prediction, self.probabilities)

    def without(self, tokens: Collection[str]) -> TokenHeatmap:
        """The heatmap without the columns of ``tokens`` (e.g. special tokens, to compare with methods that leave
        them at zero; the colours are then scaled over the remaining tokens)."""
        keep = [i for i, token in enumerate(self.tokens) if token not in tokens]
        return TokenHeatmap([self.tokens[i] for i in keep], {label: [scores[i] for i in keep]
                                                              for label, scores in self.rows.items()},
                            self.title, self.target, self.prediction, self.probabilities)

    def summary(self) -> str:
        """One line: prediction, probabilities and explained target (what both renderers print under the title)."""
        parts = []
        if self.prediction:
            parts.append(f"prediction: {self.prediction}")
        if self.probabilities:
            parts.append("p: " + ", ".join(f"{label} {p:.3f}" for label, p in self.probabilities.items()))
        if self.target:
            parts.append(f"explained: {self.target}")
        return " · ".join(parts)

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)

    def _repr_html_(self) -> str:
        return heatmap_fragment([self])  # notebooks display heatmaps inline


def _floats(scores: Scores) -> list[float]:
    if isinstance(scores, torch.Tensor):
        return scores.detach().double().cpu().flatten().tolist()
    return [float(score) for score in scores]


def from_explanation(explanation: Explanation, tokenizer, index: int = 0, *, method: str = "bcos",
                     labels: Sequence[str] | Mapping[int, str] | None = None,
                     probabilities: torch.Tensor | None = None, top_k: int = 5, title: str = "") -> TokenHeatmap:
    """The heatmap of example ``index`` of a :class:`bcos.Explanation`.

    One row named ``method`` (one row per class for ``target="all"``). Classifiers name classes by ``labels``
    (e.g. ``model.config.id2label``; default: the class index) and show every class's probability; language
    models (explanations with a ``position``) name vocabulary items by their decoded text and show the ``top_k``
    likeliest tokens. A contrastive explanation's target reads ``"<target> rather than <foil>"``.

    Args:
        probabilities: ``[classes]`` probabilities to show instead of ``explanation.probabilities[index]`` (e.g.
            softmax of the logits times a B-cos model's logit scale).
    """
    real = explanation.attention_mask[index].bool()
    tokens = token_strings(explanation.input_ids[index:index + 1], explanation.attention_mask[index:index + 1],
                           tokenizer)[0]
    language_model = explanation.position is not None

    def name(item: int) -> str:
        if language_model:
            return token_name(tokenizer, item)
        return str(labels[item]) if labels is not None else str(item)

    contributions = explanation.contributions[index]
    if contributions.dim() == 2:  # target="all": [classes, seq]
        rows = {name(int(c)): contributions[row, real] for row, c in enumerate(explanation.target)}
        target = "every class"
    else:
        rows = {method: contributions[real]}
        target = name(int(explanation.target[index]))
        if explanation.foil is not None:
            target += f" rather than {name(int(explanation.foil[index]))}"
    if language_model:
        at = int(real[:int(explanation.position[index])].sum())  # the explained position among the real tokens
        target += f" (logits at token {at}: {tokens[at]!r})"
    shown = explanation.probabilities[index] if probabilities is None else probabilities
    return TokenHeatmap(tokens, rows, title, target, name(int(explanation.prediction[index])),
                        likeliest(shown, name, top_k if language_model else None))


def token_name(tokenizer, item: int) -> str:
    """How a vocabulary item is shown: its decoded text, quoted (``' Paris'``), so spaces stay visible."""
    return repr(tokenizer.decode([item]))


def likeliest(probabilities: torch.Tensor, name: Callable[[int], str], top_k: int | None = None) -> dict[str, float]:
    """``name(i) -> p`` for the ``top_k`` likeliest items of ``probabilities [classes]`` (None: every class, in
    class order)."""
    probabilities = probabilities.detach().double().cpu()
    if top_k is None:
        return {name(item): float(p) for item, p in enumerate(probabilities)}
    values, items = probabilities.topk(min(top_k, probabilities.numel()))
    return {name(int(item)): float(p) for p, item in zip(values, items)}
