"""bcos.metrics against hand-computed values on a bag-of-words linear classifier whose answers are known."""
import itertools
import math

import pytest
import torch
from torch import nn

from bcos.metrics import (DEFAULT_FRACTIONS, SeqPGInstances, average_precision, build_seqpg_instances,
                          comprehensiveness, erasure_metrics, plausibility, pointing_game, pr_auc, sufficiency,
                          word_scores)
from bcos.metrics.erasure import perturb

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIAL = (PAD, CLS, SEP, MASK)
#: class-0 weight of tokens 4..10; class 1 has the opposite weight, special tokens and [MASK] weigh 0
TOKEN_WEIGHTS = {4: 2.0, 5: 1.0, 6: -0.5, 7: 0.25, 8: -1.5, 9: 0.75, 10: 1.25}


class BagOfWords(nn.Module):
    """A linear bag-of-words classifier: ``logits[b] = Σ_t attention_mask[b, t] · weight[input_ids[b, t]]``."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(weight, freeze=False)  # [vocab, classes]

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        return (self.embedding(input_ids) * attention_mask.unsqueeze(-1)).sum(dim=1)

    def predict_proba(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self(input_ids, attention_mask).softmax(dim=-1)


def bag_of_words() -> BagOfWords:
    weight = torch.zeros(11, 2, dtype=torch.float64)
    for token, value in TOKEN_WEIGHTS.items():
        weight[token] = torch.tensor([value, -value])
    return BagOfWords(weight)


def batch(*rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``[CLS] tokens [SEP]`` rows."""
    length = max(len(row) for row in rows) + 2
    ids = torch.tensor([[CLS, *row, SEP] + [PAD] * (length - len(row) - 2) for row in rows])
    return ids, (ids != PAD).long()


def perfect_scores(model: BagOfWords, ids: torch.Tensor) -> torch.Tensor:
    """Each token's weight for the predicted class: the exact attribution of this linear model."""
    prediction = model(ids, (ids != PAD).long()).argmax(-1)
    return model.embedding.weight[ids, prediction[:, None]]


def aopc_by_hand(model: BagOfWords, ids: torch.Tensor, scores: torch.Tensor, sufficiency_: bool) -> list[float]:
    """An independent loop over examples and fractions, on Python lists."""
    results = []
    for row_ids, row_scores in zip(ids.tolist(), scores.tolist()):
        content = [t for t, token in enumerate(row_ids) if token not in SPECIAL]
        ranked = sorted(content, key=lambda t: -row_scores[t])
        proba = lambda tokens: model.predict_proba(torch.tensor([tokens]), torch.ones(1, len(tokens)))[0].detach()
        original = proba([token for token in row_ids if token != PAD])
        predicted = int(original.argmax())
        drops = []
        for fraction in DEFAULT_FRACTIONS:
            top = set(ranked[:max(1, math.floor(fraction * len(content) + 1e-9))])
            removed = set(content) - top if sufficiency_ else top
            kept = [MASK if t in removed else token for t, token in enumerate(row_ids) if token != PAD]
            drops.append(float(original[predicted] - proba(kept)[predicted]))
        results.append(100 * sum(drops) / len(drops))
    return results


def test_aopc_of_one_example_by_hand():
    model = bag_of_words()
    ids, mask = batch([4, 5])  # class-0 logit 3 = 2 + 1: p = σ(6)
    scores = perfect_scores(model, ids)
    settings = dict(fractions=(0.5, 1.0), replacement_id=MASK, special_token_ids=SPECIAL)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))
    comp = comprehensiveness(model.predict_proba, ids, mask, scores, **settings)
    suff = sufficiency(model.predict_proba, ids, mask, scores, **settings)
    # 50 %: remove (keep) the top token "4"; 100 %: remove (keep) both
    assert comp.mean == pytest.approx(100 * ((sigmoid(6) - sigmoid(2)) + (sigmoid(6) - 0.5)) / 2, abs=1e-12)
    assert suff.mean == pytest.approx(100 * ((sigmoid(6) - sigmoid(4)) + 0.0) / 2, abs=1e-12)
    assert comp.settings["fractions"] == [0.5, 1.0] and comp.settings["replacement_id"] == MASK


def test_aopc_equals_an_independent_loop_and_perfect_scores_are_best():
    model = bag_of_words()
    ids, mask = batch([4, 5, 6, 7, 8], [8, 6, 9])  # predicted classes 0 and 1
    perfect = perfect_scores(model, ids)
    settings = dict(replacement_id=MASK, special_token_ids=SPECIAL)
    for scores in (perfect, -perfect):
        results = erasure_metrics(model.predict_proba, ids, mask, scores, **settings)
        for metric, result in results.items():
            expected = aopc_by_hand(model, ids, scores, sufficiency_=metric == "sufficiency")
            torch.testing.assert_close(result.per_example, torch.tensor(expected, dtype=torch.float64))
            assert result.mean == pytest.approx(sum(expected) / 2)
            assert result.drops.shape == (2, len(DEFAULT_FRACTIONS))
    # every ranking of the first example's 5 tokens: perfect scores give the highest comprehensiveness and the
    # lowest sufficiency, reversed ones the opposite
    rankings = torch.tensor(list(itertools.permutations(range(5))), dtype=torch.float64)
    all_ids = ids[:1].expand(len(rankings), -1)
    all_scores = torch.zeros(all_ids.shape, dtype=torch.float64)
    all_scores[:, 1:6] = rankings
    results = erasure_metrics(model.predict_proba, all_ids, mask[:1].expand_as(all_ids), all_scores, **settings)
    perfect_results = erasure_metrics(model.predict_proba, ids[:1], mask[:1], perfect[:1], **settings)
    reversed_results = erasure_metrics(model.predict_proba, ids[:1], mask[:1], -perfect[:1], **settings)
    comp, suff = results["comprehensiveness"].per_example, results["sufficiency"].per_example
    assert perfect_results["comprehensiveness"].mean == pytest.approx(float(comp.max()), abs=1e-12)
    assert reversed_results["comprehensiveness"].mean == pytest.approx(float(comp.min()), abs=1e-12)
    assert perfect_results["sufficiency"].mean == pytest.approx(float(suff.min()), abs=1e-12)
    assert reversed_results["sufficiency"].mean == pytest.approx(float(suff.max()), abs=1e-12)


def test_perturbed_forward_passes_are_batched():
    model = bag_of_words()
    ids, mask = batch([4, 5, 6, 7, 8], [8, 6, 9])
    calls = []

    def predict_proba(input_ids, attention_mask):
        calls.append(input_ids.shape[0])
        return model.predict_proba(input_ids, attention_mask)

    erasure_metrics(predict_proba, ids, mask, perfect_scores(model, ids), replacement_id=MASK,
                    special_token_ids=SPECIAL, batch_size=16)
    rows = 2 * (1 + 2 * len(DEFAULT_FRACTIONS))  # originals + 9 fractions x 2 metrics
    assert sum(calls) == rows and len(calls) == math.ceil(rows / 16) and max(calls) <= 16


def test_delete_mode_repacks_rows_on_the_padding_side():
    ids = torch.tensor([[PAD, PAD, CLS, 4, 5, 6, SEP]])
    mask = (ids != PAD).long()
    remove = torch.tensor([[False, False, False, False, True, False, False]])
    left_ids, left_mask = perturb(ids, mask, remove, "delete", None, PAD, "left")
    assert left_ids.tolist() == [[PAD, PAD, PAD, CLS, 4, 6, SEP]] and left_mask.tolist() == [[0, 0, 0, 1, 1, 1, 1]]
    right_ids, right_mask = perturb(ids, mask, remove, "delete", None, PAD, "right")
    assert right_ids.tolist() == [[CLS, 4, 6, SEP, PAD, PAD, PAD]] and right_mask.tolist() == [[1, 1, 1, 1, 0, 0, 0]]
    # [MASK] weighs 0 in the bag of words, so deleting and masking give the same scores
    model = bag_of_words()
    ids, mask = batch([4, 5, 6, 7, 8], [8, 6, 9])
    scores = perfect_scores(model, ids)
    deleted = erasure_metrics(model.predict_proba, ids, mask, scores, mode="delete", special_token_ids=SPECIAL)
    masked = erasure_metrics(model.predict_proba, ids, mask, scores, replacement_id=MASK, special_token_ids=SPECIAL)
    for metric in deleted:
        torch.testing.assert_close(deleted[metric].per_example, masked[metric].per_example)
    assert deleted["sufficiency"].settings["mode"] == "delete"


def seqpg_examples() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = [[4, 5, 9, 10], [8, 6, 8, 6, 9], [4, 10, 9], [8, 6, 6, 5], [4, 4, 6, 7], [8, 8, 9],
            [8, 8, 4],  # class 1 by the model, labelled 0: misclassified
            [4, 6],  # too short
            [5, 6, 8, 9]]  # labelled 1, predicted 1 with p = σ(0.5) ≈ 0.62 < 0.7
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 0, 1])
    ids, mask = batch(*rows)
    return ids, mask, labels


def test_seqpg_instances_pair_confident_correct_examples_of_different_classes(tmp_path):
    model = bag_of_words()
    ids, mask, labels = seqpg_examples()
    build = lambda seed: build_seqpg_instances(model.predict_proba, ids, mask, labels, segment_length=3,
                                               confidence=0.7, prefix_ids=[CLS], suffix_ids=[SEP],
                                               special_token_ids=SPECIAL, seed=seed)
    instances = build(0)
    assert len(instances) == 3 and instances.settings["n_eligible"] == 6
    assert instances.input_ids.shape == (3, 1 + 2 * 3 + 1) and bool(instances.attention_mask.all())
    assert instances.spans.tolist() == [[[1, 4], [4, 7]]] * 3
    assert sorted(instances.sources.flatten().tolist()) == [0, 1, 2, 3, 4, 5]
    for row in range(3):
        assert sorted(instances.labels[row].tolist()) == [0, 1]
        assert instances.input_ids[row, 0] == CLS and instances.input_ids[row, -1] == SEP
        for segment, ((start, end), source) in enumerate(zip(instances.spans[row].tolist(),
                                                             instances.sources[row].tolist())):
            assert instances.input_ids[row, start:end].tolist() == ids[source, 1:4].tolist()  # first 3 tokens
            assert instances.labels[row, segment] == labels[source]
    again = build(0)
    assert torch.equal(again.input_ids, instances.input_ids) and torch.equal(again.sources, instances.sources)
    instances.save(tmp_path / "seqpg.pt")
    loaded = SeqPGInstances.load(tmp_path / "seqpg.pt")
    assert torch.equal(loaded.input_ids, instances.input_ids) and torch.equal(loaded.labels, instances.labels)
    assert loaded.settings == instances.settings


def test_seqpg_of_an_oracle_is_one_and_of_a_constant_is_one_half():
    model = bag_of_words()
    ids, mask, labels = seqpg_examples()
    instances = build_seqpg_instances(model.predict_proba, ids, mask, labels, segment_length=3, confidence=0.7,
                                      prefix_ids=[CLS], suffix_ids=[SEP], special_token_ids=SPECIAL)
    n, seq = instances.input_ids.shape
    positions = torch.arange(seq)
    spans = instances.spans
    own_segment = ((positions >= spans[..., :1]) & (positions < spans[..., 1:])).double()  # [n, 2, seq]
    assert pointing_game(2 * own_segment - 1, instances).mean == 1.0
    assert pointing_game(torch.ones(n, 2, seq), instances).mean == 0.5
    # special tokens counted in the denominator: each segment gets 3 of the 8 tokens
    assert pointing_game(torch.ones(n, 2, seq), instances, include_special=True).mean == pytest.approx(3 / 8)
    assert pointing_game(torch.zeros(n, 2, seq), instances).mean == 0.0  # no positive mass scores 0
    # segment 0 explained with mass 3 inside, 1 in the other segment, negatives ignored; segment 1 with none
    scores = torch.zeros(n, 2, seq)
    scores[:, 0, 1:4] = torch.tensor([2.0, 1.0, -5.0])
    scores[:, 0, 4] = 1.0
    scores[:, 1, 4:7] = -1.0
    result = pointing_game(scores, instances)
    assert result.per_segment[0].tolist() == [0.75, 0.0] and result.mean == pytest.approx(0.375)


def test_precision_recall_areas_by_hand():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([1, 0, 1, 0])
    # points (recall, precision): (.5, 1), (.5, .5), (1, 2/3), (1, .5)
    assert average_precision(scores, labels) == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    assert pr_auc(scores, labels) == pytest.approx(0.5 * 1 + 0.5 * (0.5 + 2 / 3) / 2)
    ties = torch.tensor([0.5, 0.5, 0.1])
    # tied scores enter together: (.5, .5), then (1, 2/3)
    assert average_precision(ties, torch.tensor([1, 0, 1])) == pytest.approx(0.5 * 0.5 + 0.5 * (2 / 3))
    assert pr_auc(ties, torch.tensor([1, 0, 1])) == pytest.approx(0.5 * (1 + 0.5) / 2 + 0.5 * (0.5 + 2 / 3) / 2)


def test_plausibility_by_hand():
    # example 0: [CLS] w0 w1a w1b w2 w3 w4 [SEP]; the two subwords of word 1 are summed (0.05 + 0.05)
    scores = torch.tensor([[5.0, 0.9, 0.05, 0.05, 0.8, 0.2, 0.7, 5.0],
                           [5.0, 0.1, 0.9, 0.2, 0.3, 5.0, 0.0, 0.0]])
    word_ids = torch.tensor([[-1, 0, 1, 1, 2, 3, 4, -1],
                             [-1, 0, 1, 2, 3, -1, -1, -1]])
    rationales = torch.tensor([[1, 1, 0, 0, 1],
                               [0, 1, 0, 0, -1]])
    summed, present = word_scores(scores, word_ids, 5)
    torch.testing.assert_close(summed[0], torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7]))
    assert present[1].tolist() == [True, True, True, True, False]
    result = plausibility(scores, word_ids, rationales)
    # example 0: top-3 words {0, 2, 4} vs gold {0, 1, 4}: token P = R = 2/3; spans {0} {2} {4} vs [0, 2) {4}:
    # IOUs 1/2, 0, 1 -> 2 matches: span P = 2/3, R = 1. Example 1: top-1 {1} = gold {1}: all 1.
    assert result.token_f1 == pytest.approx((2 / 3 + 1) / 2)
    assert result.iou_f1 == pytest.approx(2 * (5 / 6) * 1 / (5 / 6 + 1))
    # example 0 ranks words 0 (+), 2 (-), 4 (+), 3 (-), 1 (+): points (1/3, 1), (1/3, 1/2), (2/3, 2/3), (2/3, 1/2),
    # (1, 3/5); example 1 ranks the gold word first: area 1
    area = 1 / 3 * 1 + 1 / 3 * (1 / 2 + 2 / 3) / 2 + 1 / 3 * (1 / 2 + 3 / 5) / 2
    assert result.auprc == pytest.approx((area + 1) / 2)
    assert result.n_examples == 2 and result.settings["iou_threshold"] == 0.5
    average = plausibility(scores, word_ids, rationales, auprc="average_precision")
    assert average.auprc == pytest.approx((1 / 3 * 1 + 1 / 3 * 2 / 3 + 1 / 3 * 3 / 5 + 1) / 2)
    # threshold 0.75: example 0 predicts {0, 2}, example 1 predicts {1}
    thresholded = plausibility(scores, word_ids, rationales, threshold=0.75)
    assert thresholded.token_f1 == pytest.approx((f1(1 / 2, 1 / 3) + 1) / 2)


def f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall)
