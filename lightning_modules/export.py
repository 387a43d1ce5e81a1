"""Export of a trained model in Hugging Face format (the callback that calls it: ``callbacks.HFExport``)."""
from __future__ import annotations

import shutil
from pathlib import Path

from lightning.pytorch import LightningModule
from torch import nn

from bcos.convert import annealing_progress
from bcos.handle import record_max_length, record_probabilities


#: the sub-folder of an export that holds the LoRA adapter of a model trained with ``lora``
LORA_ADAPTER_FOLDER = "lora_adapter"


def export_hf(model: nn.Module, tokenizer, folder: str | Path, logit_scale: float = 1.0,
              link: str = "softmax", max_length: int | None = None, peft_model=None) -> Path:
    """Saves ``model`` and ``tokenizer`` with ``save_pretrained`` into ``folder``, replacing it whole.

    ``bcos.load(folder)`` reloads either (a B-cos or a conventional model) with the logits of ``model``.
    ``logit_scale``, the factor the training loss applied to the logits, and ``link``, ``sigmoid`` (BCE) or
    ``softmax`` (CE), are recorded in the config (``bcos.handle.record_probabilities``): the trained
    probabilities are ``link(logit_scale * logits)``, what ``bcos.load(folder).probabilities`` gives.
    ``max_length``, the tokens per training example, is recorded too (``bcos.handle.record_max_length``), so that
    the commands that load the model use it by default.
    With ``peft_model``, the ``peft.PeftModel`` around ``model``, the export holds ``model`` with the adapters merged
    (loadable like any other) and the adapter itself in ``lora_adapter/`` (``bcos.convert.lora.load_lora``).
    """
    progress = annealing_progress(model)
    if progress is not None:
        raise ValueError(f"the model is at {progress:.0%} of its annealed B-cos conversion, not yet a B-cos model: "
                         "export it once the annealing has ended")
    folder = Path(folder)
    if peft_model is not None:
        from bcos.convert.lora import merged_copy  # peft is optional (the lora extra)

        model = merged_copy(peft_model)
    record_probabilities(model.config, logit_scale, link)
    if max_length is not None:
        record_max_length(model.config, max_length)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if peft_model is not None:
        peft_model.save_pretrained(partial / LORA_ADAPTER_FOLDER)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def export_module(module: LightningModule, tokenizer, folder: str | Path) -> Path:
    """:func:`export_hf` of a LightningModule's ``.model`` with the logit scale, link function and tokens per example
    it trains with."""
    max_length = module.trained_max_length() if hasattr(module, "trained_max_length") else None
    return export_hf(module.model, tokenizer, folder, logit_scale=float(getattr(module, "logit_scale", 1.0)),
                     link=getattr(module, "link", "softmax"), max_length=max_length,
                     peft_model=getattr(module, "peft_model", None))
