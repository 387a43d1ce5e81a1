"""A closed-form weighted ridge regression as Captum's interpretable model for LIME and KernelSHAP.

Captum's defaults (scikit-learn's ``Lasso`` / ``LinearRegression``) need scikit-learn, which is not a dependency;
this solves the same kind of fit exactly and deterministically, on CPU or GPU.
"""
from __future__ import annotations

from functools import partial

import torch
from captum._utils.models.linear_model import LinearModel
from torch.utils.data import DataLoader


def fit_weighted_ridge(model: LinearModel, dataloader: DataLoader, construct_kwargs: dict, alpha: float) -> dict:
    """Fit ``y ≈ x·w + b`` minimising ``Σ_i s_i (y_i - x_i·w - b)² + alpha·|w|²`` (intercept not penalised).

    The batches of ``dataloader`` are ``(x [n, features], y [n], s [n])``. Solved in float64 through the
    pseudo-inverse of the normal equations (the minimum-norm solution when they are singular).
    """
    xs, ys, ss = zip(*dataloader)
    x = torch.cat(xs).double()
    y, s = (torch.cat(parts).to(x).reshape(-1, 1) for parts in (ys, ss))  # Captum's KernelSHAP weights are on CPU
    design = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    penalty = torch.full((design.shape[1],), float(alpha), dtype=design.dtype, device=design.device)
    penalty[-1] = 0.0
    gram = design.T @ (s * design) + torch.diag(penalty)
    solution = torch.linalg.pinv(gram, hermitian=True) @ (design.T @ (s * y))
    dtype = ys[0].dtype
    model._construct_model_params(weight_values=solution[:-1].T.to(dtype), bias_value=solution[-1].to(dtype),
                                  **construct_kwargs)
    return {"train_loss": float((s * (design @ solution - y) ** 2).sum() / s.sum())}


class WeightedRidge(LinearModel):
    """Captum ``Model``: weighted least squares with an L2 penalty ``alpha`` (0: plain weighted least squares)."""

    def __init__(self, alpha: float = 0.0) -> None:
        super().__init__(train_fn=partial(fit_weighted_ridge, alpha=alpha))
        self.alpha = alpha
