"""The sequence pointing game (SeqPG): explanations of a class should point at the segment of that class.

Instances concatenate ``n_segments`` confidently and correctly classified examples of different classes, each
truncated to exactly ``segment_length`` content tokens, between the model's special tokens
(``[CLS] seg1 seg2 [SEP]`` for BERT-like models). Each segment's class is explained on the whole instance; the
score of a segment is the positive attribution mass inside it over the positive mass on all segments. With
equal segments a constant attribution scores ``1 / n_segments``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike

import torch

from ..tokens import content_mask
from .erasure import PredictProba, batched_proba


@dataclass
class SeqPGInstances:
    """Cached pointing-game inputs, so that every method sees the same instances.

    Attributes:
        input_ids, attention_mask: ``[instances, seq]`` (no padding: every instance has the same length).
        spans: ``[instances, segments, 2]`` start (inclusive) and end (exclusive) position of each segment.
        labels: ``[instances, segments]`` the class of each segment (the target to explain for it).
        sources: ``[instances, segments]`` indices of the source examples.
        settings: how they were built.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    spans: torch.Tensor
    labels: torch.Tensor
    sources: torch.Tensor
    settings: dict

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def save(self, path: str | PathLike) -> None:
        torch.save(dataclasses.asdict(self), path)

    @classmethod
    def load(cls, path: str | PathLike) -> SeqPGInstances:
        return cls(**torch.load(path, weights_only=True))


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after a text (``([CLS], [SEP])`` for BERT)."""
    with_special = tokenizer("a")["input_ids"]
    text = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(text) + 1):
        if with_special[start:start + len(text)] == text:
            return with_special[:start], with_special[start + len(text):]
    raise ValueError("cannot locate the text between the tokenizer's special tokens")


def build_seqpg_instances(
    predict_proba: PredictProba,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    segment_length: int,
    n_segments: int = 2,
    confidence: float = 0.5,
    prefix_ids: Sequence[int] = (),
    suffix_ids: Sequence[int] = (),
    special_token_ids: Iterable[int] = (),
    max_instances: int | None = None,
    seed: int = 0,
    batch_size: int = 128,
) -> SeqPGInstances:
    """Build pointing-game instances from labelled examples ``input_ids [n, seq]`` with gold ``labels [n]``.

    Eligible examples are classified correctly with probability > ``confidence`` and have at least
    ``segment_length`` content tokens (real, non-special); they keep their first ``segment_length``. Pairing is
    deterministic given ``seed``: each class's eligible examples are shuffled, each instance takes one example
    from each of the ``n_segments`` classes with the most examples left (ties: lower class id), and the segment
    order within an instance is shuffled. Building stops when fewer than ``n_segments`` classes have examples
    left or at ``max_instances``. ``prefix_ids`` / ``suffix_ids`` surround the segments (see
    :func:`special_affixes`).
    """
    if n_segments < 2 or segment_length < 1:
        raise ValueError(f"the pointing game needs n_segments >= 2 and segment_length >= 1, got {n_segments} and "
                         f"{segment_length}")
    special_token_ids = sorted(int(i) for i in special_token_ids)
    confident = batched_proba(predict_proba, input_ids, attention_mask, batch_size).cpu().max(dim=-1)
    input_ids, attention_mask, labels = input_ids.cpu(), attention_mask.cpu(), labels.cpu()
    content = content_mask(input_ids, attention_mask, special_token_ids)
    eligible = (confident.indices == labels) & (confident.values > confidence) & (content.sum(-1) >= segment_length)
    generator = torch.Generator().manual_seed(seed)
    queues: dict[int, list[int]] = {}
    for label in labels[eligible].unique().tolist():
        members = torch.nonzero(eligible & (labels == label))[:, 0]
        queues[label] = members[torch.randperm(len(members), generator=generator)].tolist()
    groups: list[list[int]] = []
    while max_instances is None or len(groups) < max_instances:
        available = sorted((c for c in queues if queues[c]), key=lambda c: (-len(queues[c]), c))
        if len(available) < n_segments:
            break
        members = [queues[c].pop() for c in available[:n_segments]]
        groups.append([members[i] for i in torch.randperm(n_segments, generator=generator).tolist()])
    prefix, suffix = list(prefix_ids), list(suffix_ids)
    instance_ids = torch.empty(len(groups), len(prefix) + n_segments * segment_length + len(suffix),
                               dtype=input_ids.dtype)
    for row, group in enumerate(groups):
        segments = [input_ids[i][content[i]][:segment_length].tolist() for i in group]
        instance_ids[row] = torch.tensor(prefix + sum(segments, []) + suffix)
    sources = torch.tensor(groups, dtype=torch.long).view(len(groups), n_segments)
    starts = len(prefix) + segment_length * torch.arange(n_segments)
    spans = torch.stack([starts, starts + segment_length], dim=-1).expand(len(groups), -1, -1).clone()
    settings = {"segment_length": segment_length, "n_segments": n_segments, "confidence": confidence,
                "prefix_ids": prefix, "suffix_ids": suffix, "special_token_ids": special_token_ids,
                "max_instances": max_instances, "seed": seed, "n_eligible": int(eligible.sum())}
    return SeqPGInstances(instance_ids, torch.ones_like(instance_ids), spans, labels[sources], sources, settings)


@dataclass
class PointingGameResult:
    """SeqPG scores. ``per_segment [instances, segments]``, ``per_instance [instances]``, ``mean``, ``settings``."""

    per_segment: torch.Tensor
    per_instance: torch.Tensor
    mean: float
    settings: dict


def pointing_game(scores: torch.Tensor, instances: SeqPGInstances, *,
                  include_special: bool = False) -> PointingGameResult:
    """Score ``scores [instances, segments, seq]``: row ``[i, j]`` explains ``instances.labels[i, j]``.

    A segment scores (positive mass inside it) / (positive mass over all segments); 0 when there is no positive
    mass. ``include_special=True`` counts the special tokens around the segments in the denominator too.
    """
    positions = torch.arange(scores.shape[-1], device=scores.device)
    spans = instances.spans.to(scores.device)
    inside = (positions >= spans[..., :1]) & (positions < spans[..., 1:])  # [instances, segments, seq]
    positive = scores.clamp_min(0)
    total = positive.sum(dim=-1) if include_special else (positive * inside.any(dim=1, keepdim=True)).sum(dim=-1)
    hit = (positive * inside).sum(dim=-1)
    per_segment = torch.where(total > 0, hit / total, torch.zeros_like(total))
    per_instance = per_segment.mean(dim=-1)
    settings = {"include_special": include_special, "no_positive_mass": 0.0, **instances.settings}
    return PointingGameResult(per_segment, per_instance, float(per_instance.mean()), settings)
