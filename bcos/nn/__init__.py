"""B-cos layers and explanation mode (pure torch, plus transformers' attention registry)."""
from .activation import GATES, DynamicActivation, GatedActivation, LogitSoftcap
from .attention import BCOS_ATTENTION, bcos_sdpa_attention_forward, register_bcos_attention
from .linear import BcosLinear, BcosScale, SplitLinear, bcos_transform
from .mode import dynamic, explanation_mode, is_explanation_mode
from .norm import BcosLayerNorm, BcosRMSNorm

__all__ = [
    "BCOS_ATTENTION",
    "GATES",
    "BcosLayerNorm",
    "BcosLinear",
    "BcosRMSNorm",
    "BcosScale",
    "SplitLinear",
    "DynamicActivation",
    "GatedActivation",
    "LogitSoftcap",
    "bcos_sdpa_attention_forward",
    "bcos_transform",
    "dynamic",
    "explanation_mode",
    "is_explanation_mode",
    "register_bcos_attention",
]
