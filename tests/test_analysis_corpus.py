"""Explaining a data set to shard files (``bcos.analysis.corpus``, ``python -m bcos.explain_corpus``): the rows equal
``bcos.explain`` on each text alone, every row is written exactly once after an interruption and a resume and
across two gloo processes, and bad inputs fail with clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import transformers

import bcos
from bcos.analysis import corpus as corpus_module
from bcos.analysis.corpus import read_corpus, shards, write_corpus
from bcos.cli.explain_corpus import main
from bcos.data import Columns, read_split
from bcos.explain import explainer_for

pytestmark = pytest.mark.usefixtures("one_thread")

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
CLASSES = {0: "hatespeech", 1: "normal", 2: "offensive"}
ROWS = 23  # with chunks of 5: 5 chunks, the last one short


def write_data(folder: Path, rows: int = ROWS) -> Path:
    """``test.jsonl``: texts (one with an empty text, which the data layer skips) with labels, ids and annotator
    targets."""
    folder.mkdir(parents=True, exist_ok=True)
    words = ["black", "women", "immigrants", "<script>", "unbelievably", "film"]
    lines = []
    for i in range(rows + 1):
        text = "" if i == 3 else f"the {words[i % 6]} were {words[(i * 5) % 6]} here {i}"
        lines.append({"id": f"post{i}", "text": text, "label": i % 3,
                      "annotator_targets": [["African"], ["African", "Women"], ["None"]] if i % 2 else
                      [["Women"], ["Women"], ["None"]]})
    (folder / "test.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny B-cos BERT classifier with three named classes and the MiniLM tokenizer, and a small data set."""
    root = tmp_path_factory.mktemp("corpus")
    tokenizer = bcos.load_tokenizer(MINILM)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=37, max_position_embeddings=128,
                                     num_labels=3, id2label=CLASSES, label2id={v: k for k, v in CLASSES.items()})
    model = bcos.bcosify(transformers.BertForSequenceClassification(config))
    model.save_pretrained(root / "bcos")
    tokenizer.save_pretrained(root / "bcos")
    return {"model": root / "bcos", "data": write_data(root / "data")}


def library_write(tiny: dict[str, Path], folder: Path, **kwargs) -> list[Path]:
    handle = bcos.load(tiny["model"])
    split = read_split(str(tiny["data"]), "test", columns=Columns(rationale=None))
    return write_corpus(handle, explainer_for(handle, "bcos"), split, folder, {"model": "tiny"}, chunk_size=5,
                        batch_size=2, max_length=32, keep_columns=["id"], progress=False, **kwargs)


def test_rows_equal_bcos_explain_of_each_text_alone(tiny, tmp_path):
    record = main(["--model", str(tiny["model"]), "--dataset", str(tiny["data"]), "--split", "test",
                   "--out", str(tmp_path / "corpus"), "--chunk-size", "5", "--batch-size", "3",
                   "--keep-columns", "id,annotator_targets", "--device", "cpu"])
    corpus = read_corpus(tmp_path / "corpus")
    assert record["rows"] == ROWS and len(shards(tmp_path / "corpus")) == 5
    handle = bcos.load(tiny["model"])
    texts = [json.loads(line) for line in (tiny["data"] / "test.jsonl").read_text().splitlines()]
    assert corpus.rows["row"].tolist() == [i for i in range(ROWS + 1) if i != 3]  # the empty text is skipped
    special = set(handle.tokenizer.all_special_tokens)
    for row in corpus.rows.itertuples():
        source = texts[row.row]
        batch = handle.tokenizer(source["text"], return_tensors="pt")
        explanation = bcos.explain(handle.model, batch["input_ids"], batch["attention_mask"])
        logits = handle.logits(batch["input_ids"], batch["attention_mask"])[0].detach()
        assert (row.id, row.label, list(map(list, row.annotator_targets))) == (
            source["id"], source["label"], source["annotator_targets"])
        assert row.prediction == row.target == int(explanation.prediction)
        assert list(row.tokens) == bcos.token_strings(batch["input_ids"], batch["attention_mask"],
                                                      handle.tokenizer)[0]
        torch.testing.assert_close(torch.tensor(row.contributions), explanation.contributions[0].double(),
                                   rtol=1e-4, atol=1e-6)
        assert row.logit == pytest.approx(float(logits[row.prediction]), rel=1e-5)
        torch.testing.assert_close(torch.tensor(row.probabilities), handle.probabilities(logits).double(),
                                   rtol=1e-5, atol=1e-7)
        words, scores = bcos.merge_subwords(list(row.tokens), list(row.contributions), special)
        assert list(row.words) == words and list(row.word_contributions) == pytest.approx(scores)
    assert corpus.classes == CLASSES and "[CLS]" in corpus.special_tokens


def test_an_interrupted_run_resumes_and_writes_every_row_once(tiny, tmp_path, monkeypatch):
    explain_batch, calls = corpus_module.explain_batch, []

    def interrupted(*args):
        if len(calls) == 7:  # chunks 0 and 1 are complete (3 batches of 2, 2, 1 rows each); chunk 2 is begun
            raise KeyboardInterrupt
        calls.append(1)
        return explain_batch(*args)

    monkeypatch.setattr(corpus_module, "explain_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        library_write(tiny, tmp_path)
    first = {path.name: path.stat().st_mtime_ns for path in shards(tmp_path)}
    assert sorted(first) == ["shard-00000.parquet", "shard-00001.parquet"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["corpus.json", *sorted(first)]  # no partial file
    with pytest.raises(ValueError, match="holds 2 of 5 shards: the run that writes it is unfinished"):
        read_corpus(tmp_path)

    calls.clear()
    monkeypatch.setattr(corpus_module, "explain_batch", lambda *args: calls.append(1) or explain_batch(*args))
    written = library_write(tiny, tmp_path)
    assert [path.name for path in written] == [f"shard-0000{chunk}.parquet" for chunk in (2, 3, 4)]
    assert len(calls) == 3 + 3 + 2  # only the three missing chunks were explained (batches of 2; 5, 5, 3 rows)
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in first} == first  # nothing rewritten
    rows = read_corpus(tmp_path).rows
    assert rows["row"].tolist() == [i for i in range(ROWS + 1) if i != 3]

    with pytest.raises(ValueError, match=r"other settings \(model: 'tiny' there, 'other' now\)"):
        handle = bcos.load(tiny["model"])
        write_corpus(handle, explainer_for(handle, "bcos"),
                     read_split(str(tiny["data"]), "test", columns=Columns(rationale=None)), tmp_path,
                     {"model": "other"}, chunk_size=5, batch_size=2, max_length=32, keep_columns=["id"])


def _gloo_worker(rank: int, tiny: dict[str, Path], folder: Path, store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        written = library_write(tiny, folder)
        (folder.parent / f"rank{rank}.json").write_text(json.dumps([path.name for path in written]))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_write_disjoint_shards_whose_union_is_the_data_set(tiny, tmp_path):
    # forked (not spawned) processes: they need not import torch and transformers again
    mp.start_processes(_gloo_worker, args=(tiny, tmp_path / "corpus", str(tmp_path / "store")), nprocs=2,
                       start_method="fork")
    by_rank = [set(json.loads((tmp_path / f"rank{rank}.json").read_text())) for rank in (0, 1)]
    assert by_rank[0] and by_rank[1] and not by_rank[0] & by_rank[1]
    assert by_rank[0] | by_rank[1] == {path.name for path in shards(tmp_path / "corpus")}
    assert read_corpus(tmp_path / "corpus").rows["row"].tolist() == [i for i in range(ROWS + 1) if i != 3]


def test_several_devices_start_one_process_each(tiny, tmp_path):
    record = main(["--model", str(tiny["model"]), "--dataset", str(tiny["data"]), "--split", "test", "--out",
                   str(tmp_path), "--chunk-size", "4", "--format", "jsonl", "--device", "cpu,cpu"])
    rows = read_corpus(tmp_path).rows
    assert record["rows"] == ROWS and rows["row"].tolist() == [i for i in range(ROWS + 1) if i != 3]
    assert len(list(tmp_path.glob("shard-*.jsonl"))) == 6


@pytest.mark.parametrize("extra, message", [
    (["--keep-columns", "id,targets"], "unknown column 'targets' in --keep-columns; the split's columns are id, text"),
    (["--text-column", "body"], "Column 'body' not found in split 'test'"),
    (["--method", "integrated_gradients", "--method-params", '{"steps": 3}'], "--method-params for "
     "integrated_gradients: "),
    (["--device", "gpu:0"], "argument --device: 'gpu:0' is not a device; use cpu, cuda or cuda:N"),
    (["--device", "cpu,,cpu"], "argument --device: 'cpu,,cpu' has an empty entry; give devices like cpu or "
     "cuda:0,cuda:1"),
])
def test_bad_inputs_are_usage_errors(tiny, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tiny["model"]), "--dataset", str(tiny["data"]), "--split", "test", "--out",
              str(tmp_path), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "corpus.json").exists()


def test_an_empty_data_set_is_refused(tiny, tmp_path, capsys):
    (tmp_path / "test.jsonl").write_text(json.dumps({"text": " ", "label": 0}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tiny["model"]), "--dataset", str(tmp_path / "test.jsonl"), "--split", "test",
              "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "has no examples with a non-empty text and a label (empty split)" in capsys.readouterr().err


def test_a_folder_without_corpus_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no corpus.json"):
        read_corpus(tmp_path)

