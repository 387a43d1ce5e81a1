"""Whole-corpus analysis of explanations: explain a split to shard files (:mod:`.corpus`), word statistics per class
(:mod:`.statistics`), community bias on HateXplain (:mod:`.bias`, :mod:`.identity`) and an HTML report
(:mod:`.report`, :mod:`.sections`). ``python -m bcos.explain_corpus`` writes a corpus; ``python -m bcos.analysis``
reports on one."""
from .bias import HATEXPLAIN_COMMUNITIES, bias_aucs, generalised_mean, memberships, roc_auc
from .corpus import Corpus, read_corpus, write_corpus
from .identity import IDENTITY_WORDS, identity_shares
from .report import Section, write_report
from .sections import CommunityBias, bias_sections, community_bias, word_sections
from .statistics import sign_flips, special_token_shares, top_words, word_table

__all__ = ["HATEXPLAIN_COMMUNITIES", "IDENTITY_WORDS", "CommunityBias", "Corpus", "Section", "bias_aucs",
           "bias_sections", "community_bias", "generalised_mean", "identity_shares", "memberships", "read_corpus",
           "roc_auc", "sign_flips", "special_token_shares", "top_words", "word_sections", "word_table",
           "write_corpus", "write_report"]
