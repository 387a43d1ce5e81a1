"""Explanations: exact B-cos contributions and post-hoc baselines behind one explainer protocol."""
from .bcos_explanation import Explanation, explain
from .generation import TokenExplanations, explain_positions, generate_explained
from .protocol import Attribution, Explainer, content_mask, tokenizer_special_ids
from .registry import EXPLAINERS, explainer_for, get_explainer
from .words import merge_subwords, token_strings, whitespace_word_ids

__all__ = ["Explanation", "explain", "merge_subwords", "token_strings", "whitespace_word_ids",
           "Attribution", "Explainer", "EXPLAINERS", "content_mask", "explainer_for", "get_explainer",
           "tokenizer_special_ids", "TokenExplanations", "explain_positions", "generate_explained"]
