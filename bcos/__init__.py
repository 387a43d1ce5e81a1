"""bcos-lm: B-cos language models whose predictions are exactly explained by per-token contributions.

Public API::

    model = bcos.bcosify(model, b=2.0)            # convert a loaded transformers model in place
    explanation = bcos.explain(model, input_ids, attention_mask)
    explanation.contributions                     # [batch, seq], sums to explanation.logit
    bcos.load_pretrained(path)                    # reload a saved B-cos model
    annealing = bcos.BcosAnnealing(model, steps=500, b=1.5)  # or: from the original function to B-cos while training
    handle = bcos.load(path_or_hub_id_or_ckpt)    # a Model: model, tokenizer, kind, probabilities(logits)
    print(bcos.verify(model, original))           # check a conversion: no bias, no nonlinearity, complete, exact
"""
from .convert import (BcosAnnealing, BcosOptions, ConversionReport, bcosify, calibrate_output_gains,
                      supported_architectures)
from .explain import Explanation, merge_subwords, token_strings
from .explain import explain as _explain_function
from .handle import Model
from .hub import ModelFileError, load_model, load_pretrained, load_tokenizer, resolve_pretrained
from .loader import load
from .nn import explanation_mode, is_explanation_mode
from .verification import VerificationReport, verify

explain = _explain_function  # the function, not the subpackage bcos.explain

__version__ = "0.1.0"

__all__ = [
    "BcosAnnealing",
    "BcosOptions",
    "ConversionReport",
    "Explanation",
    "Model",
    "ModelFileError",
    "bcosify",
    "calibrate_output_gains",
    "explain",
    "explanation_mode",
    "is_explanation_mode",
    "load",
    "load_model",
    "load_pretrained",
    "load_tokenizer",
    "merge_subwords",
    "resolve_pretrained",
    "supported_architectures",
    "token_strings",
    "verify",
    "VerificationReport",
]
