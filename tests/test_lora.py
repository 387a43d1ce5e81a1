"""LoRA (peft) on B-cos models: completeness with adapters, merged == unmerged, training, adapter save/load."""
import copy

import pytest
import torch
from torch import nn

import bcos
from bcos.convert.lora import BcosLoraLinear, add_lora, load_lora
from bcos.nn import BcosLinear
from tiny_models import tiny_batch, tiny_model

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]
MODELS = [("llama", "LlamaForSequenceClassification"), ("qwen3", "Qwen3ForCausalLM"), ("phi3", "Phi3ForCausalLM"),
          ("bert", "BertForMaskedLM"), ("gpt2", "GPT2LMHeadModel"), ("modernbert", "ModernBertForSequenceClassification")]


def position_for(class_name: str) -> dict:
    return {"position": 3} if "MaskedLM" in class_name else {}


def logits(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def randomise_adapters(model: nn.Module) -> None:
    """peft starts B at 0 (the adapter is then a no-op); random B makes every check below see the adapter."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2, generator=torch.Generator().manual_seed(parameter.numel()))


@pytest.mark.parametrize("model_type,class_name", MODELS)
def test_adapters_keep_completeness_and_merging_changes_nothing(model_type, class_name):
    model = bcos.bcosify(tiny_model(model_type, class_name, dtype=torch.float64), b=1.5)
    ids, mask = tiny_batch(model_type)
    before = logits(model, ids, mask)
    peft_model = add_lora(model, r=4)
    assert all(isinstance(module.base_layer, BcosLinear) for module in model.modules()
               if isinstance(module, BcosLoraLinear))
    randomise_adapters(model)
    unmerged = logits(model, ids, mask)
    assert (unmerged - before).abs().max() > 1e-3  # the adapters act
    assert bcos.verify(model).passed
    explanation = bcos.explain(model, ids, mask, **position_for(class_name))
    assert explanation.completeness_error().max() <= 1e-6
    peft_model.merge_adapter()
    torch.testing.assert_close(logits(model, ids, mask), unmerged, rtol=0, atol=1e-10)
    assert bcos.explain(model, ids, mask, **position_for(class_name)).completeness_error().max() <= 1e-6
    merged = peft_model.merge_and_unload()
    assert not any(isinstance(module, BcosLoraLinear) for module in merged.modules())
    torch.testing.assert_close(logits(merged, ids, mask), unmerged, rtol=0, atol=1e-10)


def test_default_targets_are_the_block_linears_and_heads_are_left_out():
    model = bcos.bcosify(tiny_model("llama", "LlamaForSequenceClassification"))
    add_lora(model, r=2)
    targeted = sorted(name for name, module in model.named_modules() if hasattr(module, "lora_A"))
    assert targeted[:7] == [f"model.layers.0.{part}" for part in ("mlp.down_proj", "mlp.gate_proj", "mlp.up_proj",
                                                                   "self_attn.k_proj", "self_attn.o_proj",
                                                                   "self_attn.q_proj", "self_attn.v_proj")]
    assert len(targeted) == 14  # two layers, nothing else
    assert isinstance(model.score, BcosLinear) and isinstance(model.model.layers[0].self_attn.q_proj.base_layer,
                                                              nn.Linear)


def test_a_few_lora_steps_lower_the_loss_and_train_only_the_adapters_and_the_head(tmp_path):
    model = bcos.bcosify(tiny_model("bert", "BertForSequenceClassification", num_labels=2), b=1.5)
    frozen = {name: parameter.detach().clone() for name, parameter in model.named_parameters()
              if not name.startswith("classifier")}
    peft_model = add_lora(model, r=4, modules_to_save=["classifier"]).train()
    ids, mask = tiny_batch("bert", batch=8, seed=3)
    labels = nn.functional.one_hot(torch.arange(8) % 2, 2).float()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(15):
        loss = nn.functional.binary_cross_entropy_with_logits(
            peft_model(input_ids=ids, attention_mask=mask).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    state = dict(model.named_parameters())
    for name, value in frozen.items():
        stored = state.get(name, state.get(name.replace(".weight", ".base_layer.weight")))
        assert stored is not None and torch.equal(stored, value), name
    peft_model.eval()
    ids_eval, mask_eval = tiny_batch("bert")
    trained = logits(peft_model, ids_eval, mask_eval)

    peft_model.save_pretrained(tmp_path)
    fresh = bcos.bcosify(tiny_model("bert", "BertForSequenceClassification", num_labels=2), b=1.5)
    reloaded = load_lora(fresh, tmp_path)
    assert torch.equal(logits(reloaded, ids_eval, mask_eval), trained)
    assert bcos.explain(fresh.double(), ids_eval, mask_eval).completeness_error().max() <= 1e-6


def test_lora_dropout_on_a_bcos_layer_is_refused():
    model = bcos.bcosify(tiny_model("llama", "LlamaForCausalLM"))
    with pytest.raises(ValueError, match=r"lora_dropout=0\.1: LoRA on a B-cos layer updates its weight .* use "
                                         r"lora_dropout=0"):
        add_lora(copy.deepcopy(model), r=2, lora_dropout=0.1)
