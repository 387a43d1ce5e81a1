"""Explanations: exact B-cos contributions (and, later, post-hoc baselines behind the same protocol)."""
from .bcos_explanation import Explanation, explain
from .words import merge_subwords, token_strings

__all__ = ["Explanation", "explain", "merge_subwords", "token_strings"]
