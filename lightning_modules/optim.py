"""AdamW with a linear warm-up and linear decay schedule, stepped once per optimizer step."""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn


def register_logit_scale(module: nn.Module, logit_scale: float, learn: bool) -> None:
    """Gives ``module`` a ``log_logit_scale`` (a scalar: the log of the loss's inverse temperature), a Parameter
    when ``learn`` (give it its own learning rate with ``parameter_groups(..., extra=...)``), else a buffer;
    checkpoints hold it either way."""
    if logit_scale <= 0:
        raise ValueError(f"logit_scale must be positive, got {logit_scale}")
    log_scale = torch.tensor(math.log(logit_scale))
    if learn:
        module.log_logit_scale = nn.Parameter(log_scale)
    else:
        module.register_buffer("log_logit_scale", log_scale)


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor after ``step`` optimizer steps: 0 → 1 linearly over ``warmup_steps``, then 1 → 0
    linearly at ``total_steps`` (the schedule of transformers' ``get_linear_schedule_with_warmup``)."""
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def parameter_groups(module: nn.Module, weight_decay: float, extra: dict[str, dict] | None = None) -> list[dict]:
    """AdamW groups: matrices decay, vectors and scalars (biases, norm weights) do not.

    ``extra`` maps parameter names to their own group options (e.g. a learning rate); those parameters
    get no weight decay.
    """
    extra = extra or {}
    decay, no_decay, own = [], [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if name in extra:
            own.append({"params": [param], "weight_decay": 0.0, **extra[name]})
        else:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}, *own]


def adamw_with_linear_schedule(groups: list[dict], learning_rate: float, warmup_fraction: float,
                               total_steps: int) -> dict:
    """The ``configure_optimizers`` answer: AdamW over ``groups`` and a per-step linear warm-up/decay."""
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    optimizer = torch.optim.AdamW(groups, lr=learning_rate)
    warmup_steps = int(warmup_fraction * total_steps)
    schedule = partial(linear_warmup_decay, warmup_steps=warmup_steps, total_steps=total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
