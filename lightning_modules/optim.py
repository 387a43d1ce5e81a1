"""AdamW with a linear warm-up and linear decay schedule, stepped once per optimizer step."""
from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
from torch import nn


#: ``logit_scale="auto"``: set once, from the first batch, to 1 / RMS of the model's logits (see ``first_batch_log_scale``)
AUTO_LOGIT_SCALE = "auto"


def register_logit_scale(module: nn.Module, logit_scale: float | str, learn: bool) -> None:
    """Gives ``module`` a ``log_logit_scale`` (a scalar: the log of the loss's inverse temperature), a Parameter
    when ``learn`` (give it its own learning rate with ``parameter_groups(..., extra=...)``), else a buffer;
    checkpoints hold it either way. ``"auto"`` leaves it NaN until the module sets it from its first batch, and
    adds the buffer ``auto_log_logit_scales`` (its values at the start and at the end of an annealed conversion)."""
    if logit_scale == AUTO_LOGIT_SCALE:
        log_scale = torch.tensor(math.nan)
        module.register_buffer("auto_log_logit_scales", torch.full((2,), math.nan))
    elif isinstance(logit_scale, str) or not logit_scale > 0 or not math.isfinite(logit_scale):
        raise ValueError(f"logit_scale must be a positive number or {AUTO_LOGIT_SCALE!r}, got {logit_scale!r}")
    else:
        log_scale = torch.tensor(math.log(logit_scale))
    if learn:
        module.log_logit_scale = nn.Parameter(log_scale)
    else:
        module.register_buffer("log_logit_scale", log_scale)


def first_batch_log_scale(logits: torch.Tensor) -> torch.Tensor:
    """``-log RMS(logits)``: the log of the scale that gives the logits a root mean square of 1 (every class of
    every example counts). Shapes: ``[batch, classes]`` → scalar. Independent of b, data and model by design."""
    return -logits.detach().double().square().mean().sqrt().log()


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor after ``step`` optimizer steps: 0 → 1 linearly over ``warmup_steps``, then 1 → 0
    linearly at ``total_steps`` (the schedule of transformers' ``get_linear_schedule_with_warmup``)."""
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def parameter_groups(module: nn.Module, weight_decay: float, extra: dict[str, dict] | None = None,
                     learning_rate_of: Callable[[str], float | None] | None = None) -> list[dict]:
    """AdamW groups: matrices decay, vectors and scalars (biases, norm weights) do not.

    ``extra`` maps parameter names to their own group options (e.g. a learning rate); those parameters
    get no weight decay. ``learning_rate_of`` gives a parameter's own learning rate by its name (None: the
    optimizer's); parameters of different rates go into different groups. Empty groups are left out.
    """
    extra = extra or {}
    grouped: dict[tuple[bool, float | None], list[nn.Parameter]] = {}
    own = []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if name in extra:
            own.append({"params": [param], "weight_decay": 0.0, **extra[name]})
            continue
        rate = learning_rate_of(name) if learning_rate_of is not None else None
        grouped.setdefault((param.ndim >= 2, rate), []).append(param)
    groups = [{"params": params, "weight_decay": weight_decay if decays else 0.0,
               **({"lr": rate} if rate is not None else {})}
              for (decays, rate), params in sorted(grouped.items(), key=lambda item: (not item[0][0], item[0][1] or 0))]
    return [*groups, *own]


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
