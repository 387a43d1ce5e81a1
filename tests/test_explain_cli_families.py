"""``python -m bcos.explain`` draws a heatmap for a tiny B-cos model of every supported family, whose scores are
complete (they sum to the explained logit)."""
from __future__ import annotations

import json

import pytest

import bcos
from bcos.cli.explain import main
from bcos.convert import ADAPTERS
from test_viz import PNG_SIGNATURE, parse
from tiny_models import DECODERS, tiny_model, tiny_tokenizer

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]
TEXT = "a gripping film and the story is good"


def family_head(model_type: str) -> str:
    """The class each family is explained with: the causal LM of a decoder, the sequence classifier of an encoder."""
    wanted = ("ForCausalLM", "LMHeadModel") if model_type in DECODERS else ("ForSequenceClassification",)
    return next(name for name in ADAPTERS[model_type].architectures if name.endswith(wanted))


@pytest.mark.parametrize("model_type", sorted(ADAPTERS))
def test_every_family_gets_a_complete_heatmap(model_type, tmp_path):
    folder = tmp_path / "model"
    model = bcos.bcosify(tiny_model(model_type, family_head(model_type), num_labels=2), b=1.5)
    model.save_pretrained(folder)
    tiny_tokenizer(model_type).save_pretrained(folder)
    tokenizer = bcos.load_tokenizer(str(folder))  # transformers may pick the family's class (Qwen2Tokenizer)

    record = main(["--model", str(folder), "--text", TEXT, "--png", "--out", str(tmp_path / "heatmap.html")])

    (entry,) = record["inputs"]
    assert entry["tokens"] == tokenizer.convert_ids_to_tokens(tokenizer(TEXT)["input_ids"])
    assert parse((tmp_path / "heatmap.html").read_text()).tokens == entry["tokens"]
    assert (tmp_path / "heatmap.png").read_bytes().startswith(PNG_SIGNATURE)
    written = json.loads((tmp_path / "heatmap.json").read_text())["inputs"][0]
    batch = tokenizer(TEXT, return_tensors="pt")
    explanation = bcos.explain(bcos.load(folder).model, batch["input_ids"], batch["attention_mask"])
    assert explanation.completeness_error().max() <= 1e-3
    assert written["rows"]["bcos"] == pytest.approx(explanation.contributions[0].tolist(), rel=1e-5, abs=1e-7)
