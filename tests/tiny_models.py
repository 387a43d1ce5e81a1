"""Tiny random-weight models of every supported architecture and head, for fast unit tests."""
from __future__ import annotations

import torch
import transformers

VOCAB = 99
PAD_ID = 0

_DECODER = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=37, max_position_embeddings=64, pad_token_id=PAD_ID, bos_token_id=1, eos_token_id=2)

_CONFIGS = {
    "bert": lambda: transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                            intermediate_size=37, max_position_embeddings=64, pad_token_id=PAD_ID),
    "roberta": lambda: transformers.RobertaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                                  num_attention_heads=4, intermediate_size=37,
                                                  max_position_embeddings=70, pad_token_id=1),
    "distilbert": lambda: transformers.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                                        max_position_embeddings=64, pad_token_id=PAD_ID),
    "gpt2": lambda: transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2,
                                            pad_token_id=PAD_ID),
    "llama": lambda: transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2, intermediate_size=37,
                                              max_position_embeddings=64, pad_token_id=PAD_ID,
                                              attention_bias=True, mlp_bias=True),
    # Qwen2 has q/k/v biases of its own; Mistral's sliding window (4) is shorter than the test sequences
    "qwen2": lambda: transformers.Qwen2Config(**_DECODER),
    "mistral": lambda: transformers.MistralConfig(**_DECODER, sliding_window=4),
    "qwen3": lambda: transformers.Qwen3Config(**_DECODER, head_dim=8, attention_bias=True),
    "gemma": lambda: transformers.GemmaConfig(**_DECODER, head_dim=8),
    # Gemma 2/3: caps low enough to bite on random weights; alternating sliding (4) and global layers
    "gemma2": lambda: transformers.Gemma2Config(**_DECODER, head_dim=8, sliding_window=4, attn_logit_softcapping=1.0,
                                                final_logit_softcapping=0.5, query_pre_attn_scalar=8),
    "gemma3_text": lambda: transformers.Gemma3TextConfig(**_DECODER, head_dim=8, sliding_window=4,
                                                         final_logit_softcapping=0.5, query_pre_attn_scalar=8,
                                                         layer_types=["sliding_attention", "full_attention"]),
    "phi3": lambda: transformers.Phi3Config(**_DECODER),
    # alternating global and local (window 4) attention; every bias on; mean pooling for classification
    "modernbert": lambda: transformers.ModernBertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, pad_token_id=PAD_ID, bos_token_id=1, eos_token_id=2, cls_token_id=1,
        sep_token_id=2, local_attention=4, global_attn_every_n_layers=2, mlp_bias=True, attention_bias=True,
        norm_bias=True, classifier_bias=True, decoder_bias=True, classifier_pooling="mean"),
}

#: (architecture, model class name) for every supported combination.
ARCHITECTURES = [
    ("bert", "BertModel"), ("bert", "BertForSequenceClassification"), ("bert", "BertForMaskedLM"),
    ("roberta", "RobertaModel"), ("roberta", "RobertaForSequenceClassification"), ("roberta", "RobertaForMaskedLM"),
    ("distilbert", "DistilBertModel"), ("distilbert", "DistilBertForSequenceClassification"),
    ("distilbert", "DistilBertForMaskedLM"),
    ("gpt2", "GPT2Model"), ("gpt2", "GPT2LMHeadModel"), ("gpt2", "GPT2ForSequenceClassification"),
    ("llama", "LlamaModel"), ("llama", "LlamaForCausalLM"), ("llama", "LlamaForSequenceClassification"),
    ("qwen2", "Qwen2Model"), ("qwen2", "Qwen2ForCausalLM"), ("qwen2", "Qwen2ForSequenceClassification"),
    ("mistral", "MistralModel"), ("mistral", "MistralForCausalLM"), ("mistral", "MistralForSequenceClassification"),
    ("qwen3", "Qwen3Model"), ("qwen3", "Qwen3ForCausalLM"), ("qwen3", "Qwen3ForSequenceClassification"),
    ("gemma", "GemmaModel"), ("gemma", "GemmaForCausalLM"), ("gemma", "GemmaForSequenceClassification"),
    ("gemma2", "Gemma2Model"), ("gemma2", "Gemma2ForCausalLM"), ("gemma2", "Gemma2ForSequenceClassification"),
    ("gemma3_text", "Gemma3TextModel"), ("gemma3_text", "Gemma3ForCausalLM"),
    ("gemma3_text", "Gemma3TextForSequenceClassification"),
    ("phi3", "Phi3Model"), ("phi3", "Phi3ForCausalLM"), ("phi3", "Phi3ForSequenceClassification"),
    ("modernbert", "ModernBertModel"), ("modernbert", "ModernBertForSequenceClassification"),
    ("modernbert", "ModernBertForMaskedLM"),
]
DECODERS = {"gpt2", "llama", "qwen2", "mistral", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3"}


def tiny_model(model_type: str, class_name: str, num_labels: int = 3, seed: int = 0,
               dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A tiny randomly initialised model in eval mode, with non-zero biases so their removal is visible, and random
    norm scales where they are stored as γ - 1 (Gemma: all zero at initialisation), so that a wrong norm shows."""
    torch.manual_seed(seed)
    config = _CONFIGS[model_type]()
    config.num_labels = num_labels
    model = getattr(transformers, class_name)(config).eval().to(dtype)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.1)
            elif "norm" in name and name.endswith("weight") and not param.any():
                param.normal_(0, 0.1)
    return model


def tiny_batch(model_type: str, batch: int = 3, seq: int = 9, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids and an attention mask with padding: on the right for encoders, on the left for decoders.

    Returns ``input_ids [batch, seq]`` and ``attention_mask [batch, seq]``; example 0 is unpadded.
    """
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, seq), generator=generator)
    mask = torch.ones(batch, seq, dtype=torch.long)
    pad_id = _CONFIGS[model_type]().pad_token_id
    for row in range(1, batch):
        n_pad = min(2 * row, seq - 2)
        if model_type in DECODERS:
            mask[row, :n_pad] = 0
            ids[row, :n_pad] = pad_id
        else:
            mask[row, seq - n_pad:] = 0
            ids[row, seq - n_pad:] = pad_id
    return ids, mask
