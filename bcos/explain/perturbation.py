"""Perturbation-based post-hoc explainers (Captum): Occlusion, Shapley value sampling, KernelSHAP and LIME.

A removed token is replaced by ``baseline_token_id`` ([PAD] by default; pass the [MASK] id for encoders) with the
attention mask unchanged. Special tokens and padding are never perturbed and get a score of 0. Scores explain
the target logit.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from captum.attr import KernelShap, Lime, Occlusion, ShapleyValueSampling
from captum.attr._core.lime import LimeBase
from torch import nn

from .protocol import TokenBaselineExplainer
from .surrogate import WeightedRidge


class OcclusionExplainer(TokenBaselineExplainer):
    """Occlusion: the drop of the target logit when a window of ``window`` tokens is replaced by the baseline.

    Batched over examples (Captum ``Occlusion``, stride 1); with ``window > 1`` a token's score is the mean over
    the windows that contain it. ``perturbations_per_eval`` windows are evaluated per forward pass.
    """

    name = "occlusion"

    def __init__(self, model: nn.Module, special_token_ids: Iterable[int] = (), *, window: int = 1,
                 perturbations_per_eval: int = 16, baseline_token_id: int | None = None,
                 causal: bool | None = None) -> None:
        super().__init__(model, special_token_ids, baseline_token_id=baseline_token_id, causal=causal)
        self.window = window
        self.perturbations_per_eval = perturbations_per_eval

    def _scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: torch.Tensor,
                foil: torch.Tensor | None) -> torch.Tensor:
        scores = Occlusion(self.logits).attribute(
            input_ids, sliding_window_shapes=(self.window,), baselines=self.reference_ids(input_ids, attention_mask),
            target=target, additional_forward_args=(attention_mask, foil),
            perturbations_per_eval=self.perturbations_per_eval)
        return scores * self.content(input_ids, attention_mask)


@contextmanager
def seeded_cpu_rng(seed: int | None) -> Iterator[None]:
    """Seed the CPU generator (Captum samples perturbations there) and restore its state afterwards."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


class SamplingExplainer(TokenBaselineExplainer):
    """Base of the per-example sampling methods: one interpretable feature per content token.

    Each example is trimmed to its real tokens and explained alone; the Captum method only sees the content
    tokens (the forward function puts them back between the special tokens), so special tokens and padding are
    never removed.

    Args:
        n_samples: perturbations per example (Shapley sampling: permutations).
        perturbations_per_eval: perturbations per forward pass.
        seed: seed of the CPU generator Captum samples from, reset for every example so that an example's
            explanation does not depend on its batch (None: the global RNG state as it is).

    Subclasses take these (and ``baseline_token_id``, ``causal``) as keyword ``options``.
    """

    def __init__(self, model: nn.Module, special_token_ids: Iterable[int] = (), *, n_samples: int,
                 perturbations_per_eval: int = 32, seed: int | None = 0, baseline_token_id: int | None = None,
                 causal: bool | None = None) -> None:
        super().__init__(model, special_token_ids, baseline_token_id=baseline_token_id, causal=causal)
        self.n_samples = n_samples
        self.perturbations_per_eval = perturbations_per_eval
        self.seed = seed

    @abstractmethod
    def _method(self, forward: Callable[[torch.Tensor], torch.Tensor]):
        """The Captum attribution method over ``forward(content_ids [k, n]) -> [k, classes]``."""

    def _scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: torch.Tensor,
                foil: torch.Tensor | None) -> torch.Tensor:
        content = self.content(input_ids, attention_mask)
        scores = torch.zeros(input_ids.shape, dtype=self.dtype, device=input_ids.device)
        for row in range(input_ids.shape[0]):
            real = attention_mask[row].bool()
            row_ids, row_content = input_ids[row, real], content[row, real]
            if not row_content.any():
                continue
            forward = partial(self._content_logits, row_ids, row_content, None if foil is None else foil[row])
            with seeded_cpu_rng(self.seed):
                attributions = self._attribute_content(forward, row_ids[row_content][None], int(target[row]))
            scores[row, content[row]] = attributions[0].to(scores.dtype)
        return scores

    def _attribute_content(self, forward: Callable[[torch.Tensor], torch.Tensor], content_ids: torch.Tensor,
                           target: int) -> torch.Tensor:
        """``[1, n]`` attributions of the content tokens ``content_ids [1, n]`` of one example."""
        return self._method(forward).attribute(content_ids, baselines=self.baseline_token_id, target=target,
                                               n_samples=self.n_samples,
                                               perturbations_per_eval=self.perturbations_per_eval)

    def _content_logits(self, row_ids: torch.Tensor, row_content: torch.Tensor, foil: torch.Tensor | None,
                        content_ids: torch.Tensor) -> torch.Tensor:
        """``[k, classes]`` logits (minus the ``foil``'s, a 0-dim id, when given) of ``row_ids [seq]`` with its content
        tokens replaced by ``content_ids [k, n]``."""
        full = row_ids.expand(content_ids.shape[0], -1).clone()
        full[:, row_content] = content_ids
        return self.logits(full, torch.ones_like(full), foil)


class ShapleySamplingExplainer(SamplingExplainer):
    """Shapley value sampling (Captum ``ShapleyValueSampling``): ``n_samples`` random token permutations."""

    name = "shapley_sampling"

    def __init__(self, model: nn.Module, special_token_ids: Iterable[int] = (), *, n_samples: int = 25,
                 **options) -> None:
        super().__init__(model, special_token_ids, n_samples=n_samples, **options)

    def _method(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> ShapleyValueSampling:
        return ShapleyValueSampling(forward)


class KernelShapExplainer(SamplingExplainer):
    """KernelSHAP (Captum ``KernelShap``: coalitions sampled from the Shapley kernel, the empty and full coalitions
    weighted 1e6), fitted by weighted least squares (ridge ``alpha``, default none, as Captum's default)."""

    name = "kernel_shap"

    def __init__(self, model: nn.Module, special_token_ids: Iterable[int] = (), *, n_samples: int = 200,
                 alpha: float = 0.0, **options) -> None:
        super().__init__(model, special_token_ids, n_samples=n_samples, **options)
        self.alpha = alpha

    def _attribute_content(self, forward: Callable[[torch.Tensor], torch.Tensor], content_ids: torch.Tensor,
                           target: int) -> torch.Tensor:
        if content_ids.shape[1] > 1:
            return super()._attribute_content(forward, content_ids, target)
        # Captum's coalition-size distribution is undefined for one feature; its Shapley value is exact
        logits = forward(torch.cat([content_ids, torch.full_like(content_ids, self.baseline_token_id)]))[:, target]
        return (logits[0] - logits[1]).reshape(1, 1)

    def _method(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> LimeBase:
        method = KernelShap(forward)
        method.interpretable_model = WeightedRidge(self.alpha)  # Captum's default needs scikit-learn
        return method


def presence_kernel(original_inputs: torch.Tensor, perturbed_inputs: torch.Tensor, sample: torch.Tensor, *,
                    width: float, **kwargs) -> torch.Tensor:
    """LIME sample weight ``exp(-d²/width²)``, d = cosine distance between the binary token-presence vector
    ``sample [1, n]`` and the all-present vector: ``d = 1 - sqrt(kept / n)``."""
    distance = 1.0 - math.sqrt(float(sample.sum()) / sample.numel())
    return torch.tensor([math.exp(-distance ** 2 / width ** 2)])


class LimeExplainer(SamplingExplainer):
    """LIME (Captum ``Lime``): tokens kept with probability 1/2, samples weighted by ``presence_kernel``, a
    weighted ridge regression (``alpha``) as the surrogate.

    Differences from Captum's defaults, which do not fit token ids: the kernel's cosine distance is measured on
    the binary presence vectors (Captum's default measures it between raw token-id vectors), and the surrogate is
    a closed-form ridge instead of scikit-learn's ``Lasso(alpha=0.01)`` (scikit-learn is not a dependency).
    """

    name = "lime"

    def __init__(self, model: nn.Module, special_token_ids: Iterable[int] = (), *, n_samples: int = 200,
                 alpha: float = 0.01, kernel_width: float = 1.0, **options) -> None:
        super().__init__(model, special_token_ids, n_samples=n_samples, **options)
        self.alpha = alpha
        self.kernel_width = kernel_width

    def _method(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> Lime:
        return Lime(forward, interpretable_model=WeightedRidge(self.alpha),
                    similarity_func=partial(presence_kernel, width=self.kernel_width))
