"""Tiny random-weight models of every supported architecture and head (the lists come from bcosify's adapter
table), and of decoder families without a B-cos adapter, for fast unit tests."""
from __future__ import annotations

import tokenizers
import torch
import transformers

from bcos.convert import ADAPTERS
from bcos.kinds import is_decoder

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
    # decoder families bcosify has no adapter for (post-hoc explainers and the loader still handle them)
    "olmo": lambda: transformers.OlmoConfig(**_DECODER),
    "stablelm": lambda: transformers.StableLmConfig(**_DECODER),
}

#: (architecture, model class name) for every combination bcosify supports, from its adapter table.
ARCHITECTURES = [(model_type, name) for model_type, adapter in ADAPTERS.items() for name in adapter.architectures]
#: the decoder families among them
DECODERS = {model_type for model_type, adapter in ADAPTERS.items() if adapter.causal}
#: (architecture, causal LM class) of decoder families without a B-cos adapter
UNADAPTED_DECODERS = [("olmo", "OlmoForCausalLM"), ("stablelm", "StableLmForCausalLM")]


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
    config = _CONFIGS[model_type]()
    pad_id = config.pad_token_id
    for row in range(1, batch):
        n_pad = min(2 * row, seq - 2)
        if is_decoder(config):
            mask[row, :n_pad] = 0
            ids[row, :n_pad] = pad_id
        else:
            mask[row, seq - n_pad:] = 0
            ids[row, seq - n_pad:] = pad_id
    return ids, mask


#: the words of :func:`tiny_tokenizer` after its special tokens (ids 0-4)
TINY_WORDS = ["a", "gripping", "dull", "film", "and", "lifeless", "story", "the", "is", "good"]


def tiny_tokenizer(model_type: str) -> transformers.PreTrainedTokenizerFast:
    """A word-level tokenizer whose ids fit :data:`VOCAB`: ``[PAD]`` 0, ``[CLS]`` 1, ``[SEP]`` 2 (the tiny configs'
    pad, bos and eos ids), ``[UNK]`` 3, ``[MASK]`` 4, then :data:`TINY_WORDS`. Encoders wrap a text as
    ``[CLS] … [SEP]``, decoders prefix ``[CLS]`` (their bos) and pad on the left."""
    special = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    vocab = {token: index for index, token in enumerate(special + TINY_WORDS)}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    decoder = is_decoder(_CONFIGS[model_type]())
    template = "[CLS] $A" if decoder else "[CLS] $A [SEP]"
    backend.post_processor = tokenizers.processors.TemplateProcessing(
        single=template, special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]",
        mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]", padding_side="left" if decoder else "right")
