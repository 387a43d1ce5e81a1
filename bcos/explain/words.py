"""Token strings and subword-to-word merging for explanations."""
from __future__ import annotations

import torch

from ..tokens import whitespace_word_ids

__all__ = ["merge_subwords", "token_strings", "whitespace_word_ids"]

_WORD_START_MARKS = ("Ġ", "▁")  # byte-level BPE (GPT-2, Llama) and SentencePiece mark a token that starts a word
_CONTINUATION_MARK = "##"  # WordPiece (BERT) marks a token that continues a word


def token_strings(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer) -> list[list[str]]:
    """The tokens of each row of ``input_ids [batch, seq]``, padding left out."""
    return [
        tokenizer.convert_ids_to_tokens(ids[mask.bool()].tolist())
        for ids, mask in zip(input_ids, attention_mask)
    ]


def merge_subwords(tokens: list[str], scores: list[float] | torch.Tensor,
                   special_tokens: set[str] | frozenset[str] = frozenset()) -> tuple[list[str], list[float]]:
    """Merge subword tokens into words, summing their scores.

    Understands WordPiece (``##`` continuation) and byte-level BPE / SentencePiece (``Ġ`` / ``▁`` word start).
    Special tokens stay words of their own. Returns ``(words, word_scores)``.
    """
    scores = scores.tolist() if isinstance(scores, torch.Tensor) else list(scores)
    if len(tokens) != len(scores):
        raise ValueError(f"got {len(tokens)} tokens but {len(scores)} scores")
    marks_word_starts = any(token.startswith(_WORD_START_MARKS) for token in tokens)
    words: list[str] = []
    word_scores: list[float] = []
    previous_special = True
    for token, score in zip(tokens, scores):
        special = token in special_tokens
        if special:
            continues = False
        elif token.startswith(_CONTINUATION_MARK):
            continues, token = bool(words) and not previous_special, token[len(_CONTINUATION_MARK):]
        elif marks_word_starts:
            continues = not token.startswith(_WORD_START_MARKS) and not previous_special
        else:
            continues = False
        if not special:
            token = token.lstrip("".join(_WORD_START_MARKS)) if token.startswith(_WORD_START_MARKS) else token
        if continues:
            words[-1] += token
            word_scores[-1] += score
        else:
            words.append(token)
            word_scores.append(score)
        previous_special = special
    return words, word_scores
