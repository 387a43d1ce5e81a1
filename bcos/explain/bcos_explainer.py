"""The exact B-cos explanation behind the explainer protocol."""
from __future__ import annotations

import torch

from .bcos_explanation import explain
from .protocol import Explainer


class BcosExplainer(Explainer):
    """``bcos.explain(model, input_ids, attention_mask, target).contributions``: contributions to the target logit
    at the input of the first transformer block, summing to the logit. Special tokens are reported (their
    contribution is part of the sum). Needs a bcosified model."""

    name = "bcos"

    def _scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: torch.Tensor,
                foil: torch.Tensor | None) -> torch.Tensor:
        return explain(self.model, input_ids, attention_mask, target, foil=foil).contributions
