"""Token strings and subword merging, on the real packaged tokenizers."""
import pytest
import torch

import bcos


@pytest.mark.parametrize("name", ["sentence-transformers/all-MiniLM-L6-v2", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_subwords_merge_into_the_original_words_with_summed_scores(name):
    tokenizer = bcos.load_tokenizer(name)
    text = "unbelievably tokenizable sentences"
    batch = tokenizer([text], return_tensors="pt")
    tokens = bcos.token_strings(batch["input_ids"], batch["attention_mask"], tokenizer)[0]
    assert len(tokens) > len(text.split())  # the words really are split into subwords
    scores = torch.arange(len(tokens), dtype=torch.float64)
    words, word_scores = bcos.merge_subwords(tokens, scores, set(tokenizer.all_special_tokens))
    plain = [w for w in words if w not in tokenizer.all_special_tokens]
    assert plain == text.split()
    assert sum(word_scores) == scores.sum().item()


def test_special_tokens_stay_separate_and_padding_is_dropped():
    tokenizer = bcos.load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
    batch = tokenizer(["a b", "a longer text"], padding=True, return_tensors="pt")
    tokens = bcos.token_strings(batch["input_ids"], batch["attention_mask"], tokenizer)
    assert tokens == [["[CLS]", "a", "b", "[SEP]"], ["[CLS]", "a", "longer", "text", "[SEP]"]]
    words, scores = bcos.merge_subwords(["[CLS]", "##x", "a", "##b", "[SEP]"], [1, 2, 3, 4, 5], {"[CLS]", "[SEP]"})
    assert (words, scores) == (["[CLS]", "x", "ab", "[SEP]"], [1, 2, 7, 5])


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="got 2 tokens but 3 scores"):
        bcos.merge_subwords(["a", "b"], [1.0, 2.0, 3.0])
