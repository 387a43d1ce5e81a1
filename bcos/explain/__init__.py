"""Explanations: exact B-cos contributions and post-hoc baselines behind one explainer protocol."""
from .bcos_explanation import Explanation, explain
from .generation import TokenExplanations, explain_positions, generate_explained
from .protocol import AttributionResult, Explainer, content_mask, tokenizer_special_ids
from .registry import EXPLAINERS, explainer_for, get_explainer
from .words import merge_subwords, token_strings, whitespace_word_ids

__all__ = ["Explanation", "explain", "merge_subwords", "token_strings", "whitespace_word_ids",
           "AttributionResult", "Explainer", "EXPLAINERS", "content_mask", "explainer_for", "get_explainer",
           "tokenizer_special_ids", "TokenExplanations", "explain_positions", "generate_explained"]


def __getattr__(name: str):
    if name == "Attribution":  # deprecated: warns in protocol
        from . import protocol

        return protocol.Attribution
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
