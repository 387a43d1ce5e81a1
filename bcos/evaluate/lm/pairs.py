"""Minimal pairs with evidence words (BLiMP, IOI): reading, the skip rules, and tokenising into a padded batch.

A row has a ``prefix``, the correct next word ``target``, the wrong one ``foil``, and ``evidence``: indices of the
``prefix.split()`` words that decide the contrast (or null). Files: ``$BCOS_DATA_DIR/blimp/<subset>.jsonl`` and
``$BCOS_DATA_DIR/ioi/ioi.jsonl`` (see their READMEs), or any folder / ``.jsonl`` file of that layout.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...data.sources import DATA_DIR_ENV
from ...tokens import pad_token_id, whitespace_word_ids

SUITES = ("blimp", "ioi")
#: why a row is not evaluated, in the order the rules are checked
SKIP_REASONS = ("no_evidence", "evidence_is_whole_prefix", "same_first_token")


def suite_files(suite: str, subsets: list[str] | None = None) -> dict[str, Path]:
    """``{subset: file}`` of ``suite``: ``blimp``/``ioi`` (under ``$BCOS_DATA_DIR``), a folder of ``.jsonl`` files,
    or one ``.jsonl`` file; ``subsets`` keeps only those names (file stems)."""
    path = Path(suite)
    if suite in SUITES:
        if not os.environ.get(DATA_DIR_ENV):
            raise ValueError(f"suite {suite!r} is read from ${DATA_DIR_ENV}/{suite}/*.jsonl, but {DATA_DIR_ENV} is not "
                             "set; set it to the data folder (e.g. ../shared/data) or pass a folder or .jsonl file")
        path = Path(os.environ[DATA_DIR_ENV]) / suite
    if path.is_file() and path.suffix == ".jsonl":
        files = {path.stem: path}
    elif path.is_dir():
        files = {file.stem: file for file in sorted(path.glob("*.jsonl"))}
    else:
        raise ValueError(f"unknown suite {suite!r}: not one of {', '.join(SUITES)} and no such folder or .jsonl file")
    if not files:
        raise ValueError(f"no .jsonl files in {path}")
    if subsets:
        unknown = sorted(set(subsets) - set(files))
        if unknown:
            raise ValueError(f"unknown subsets {unknown} of {suite!r}; available: {', '.join(files)}")
        files = {name: files[name] for name in subsets}
    return files


def select_files(suites: list[str], subsets: list[str] | None = None) -> dict[tuple[str, str], Path]:
    """``{(suite, subset): file}`` of every suite; ``subsets`` keeps, per suite, only the names it has (a suite that
    has none of them is left out). Raises ValueError for names that no suite has."""
    files = {(suite, subset): file for suite in suites for subset, file in suite_files(suite).items()}
    if not subsets:
        return files
    unknown = [name for name in dict.fromkeys(subsets) if all(subset != name for _, subset in files)]
    if unknown:
        available = ", ".join(f"{suite}/{subset}" for suite, subset in files)
        raise ValueError(f"unknown subsets {unknown}: in none of the suites {', '.join(suites)}; available: "
                         f"{available}")
    return {(suite, name): files[suite, name] for suite in suites for name in dict.fromkeys(subsets)
            if (suite, name) in files}


def read_pairs(file: Path, max_rows: int | None = None) -> list[dict[str, Any]]:
    """The first ``max_rows`` rows of a minimal-pair JSONL file (all when None); checks the needed fields."""
    rows = []
    with open(file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if max_rows is not None and len(rows) >= max_rows:
                break
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [key for key in ("prefix", "target", "foil", "evidence") if key not in row]
            if missing:
                raise ValueError(f"{file}:{number} lacks the field(s) {missing}; a minimal pair needs prefix, target, "
                                 "foil and evidence (word indices into prefix.split(), or null)")
            evidence, n_words = row["evidence"], len(str(row["prefix"]).split())
            if evidence is not None:
                if not isinstance(evidence, list):
                    raise ValueError(f"{file}:{number}: evidence {evidence!r} is not a list of word indices into "
                                     "prefix.split() (or null)")
                for index in evidence:
                    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_words:
                        raise ValueError(f"{file}:{number}: evidence {index!r} is not a word index into the {n_words} "
                                         "prefix words")
            rows.append(row)
    return rows


@dataclass
class PairBatch:
    """The usable pairs of one subset, tokenised and padded on the left.

    Attributes:
        input_ids, attention_mask: ``[n, seq]`` the prefixes.
        word_ids: ``[n, seq]`` the ``prefix.split()`` word of each token; -1 for special tokens and padding.
        evidence: ``[n, words]`` bool, the evidence words (``words``: the most words of one prefix).
        target, foil: ``[n]`` the first token of ``" " + target`` / ``" " + foil``.
        rows: the source rows, in order.
        skipped: rows left out, by reason (:data:`SKIP_REASONS`).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    word_ids: torch.Tensor
    evidence: torch.Tensor
    target: torch.Tensor
    foil: torch.Tensor
    rows: list[dict[str, Any]]
    skipped: dict[str, int]

    def __len__(self) -> int:
        return len(self.rows)


def first_token(tokenizer, word: str) -> int:
    """The id of the first token of ``word`` as it follows a prefix (with its leading space)."""
    ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"the tokenizer gives no tokens for {word!r}")
    return ids[0]


def skip_reason(row: dict[str, Any], target: int, foil: int) -> str | None:
    """Why ``row`` cannot be evaluated (one of :data:`SKIP_REASONS`), or None."""
    if not row["evidence"]:
        return "no_evidence"
    if set(row["evidence"]) >= set(range(len(row["prefix"].split()))):
        return "evidence_is_whole_prefix"  # any attribution ranks it first: nothing to learn
    if target == foil:
        return "same_first_token"  # single-token scoring cannot tell them apart
    return None


def encode_pairs(rows: list[dict[str, Any]], tokenizer) -> PairBatch:
    """Tokenise the usable rows (a fast tokenizer: word ids come from its offsets); pads with the pad token, else
    the EOS token."""
    if not tokenizer.is_fast:
        raise ValueError("evidence words are mapped to tokens through character offsets: use a fast tokenizer")
    pad = pad_token_id(tokenizer)
    skipped: Counter[str] = Counter({reason: 0 for reason in SKIP_REASONS})
    kept, ids, words, targets, foils = [], [], [], [], []
    for row in rows:
        target, foil = first_token(tokenizer, row["target"]), first_token(tokenizer, row["foil"])
        reason = skip_reason(row, target, foil)
        if reason is not None:
            skipped[reason] += 1
            continue
        encoded = tokenizer(row["prefix"], return_offsets_mapping=True)
        kept.append(row)
        ids.append(encoded["input_ids"])
        words.append(whitespace_word_ids(row["prefix"], encoded["offset_mapping"]))
        targets.append(target)
        foils.append(foil)
    n, seq = len(kept), max(map(len, ids), default=0)
    n_words = max((len(row["prefix"].split()) for row in kept), default=0)
    batch = PairBatch(torch.full((n, seq), 0 if pad is None else pad, dtype=torch.long),
                      torch.zeros(n, seq, dtype=torch.long),
                      torch.full((n, seq), -1, dtype=torch.long), torch.zeros(n, n_words, dtype=torch.bool),
                      torch.tensor(targets, dtype=torch.long), torch.tensor(foils, dtype=torch.long), kept,
                      dict(skipped))
    for i, (row, row_ids, row_words) in enumerate(zip(kept, ids, words)):
        batch.input_ids[i, seq - len(row_ids):] = torch.tensor(row_ids)
        batch.attention_mask[i, seq - len(row_ids):] = 1
        batch.word_ids[i, seq - len(row_ids):] = torch.tensor(row_words)
        batch.evidence[i, row["evidence"]] = True
    return batch
