"""Plain progress lines for runs without a progress bar (output to a file or a cluster job's log)."""
from __future__ import annotations

import math
import time
from datetime import timedelta

from lightning.pytorch import Callback, LightningModule, Trainer


class ProgressLog(Callback):
    """Prints one line ``step 120/300 (40%)  epoch 0  train/loss 0.4812  val/acc 0.8000  1.52 s/step  eta 0:04:33``
    (rank zero, flushed) after the first training step, after the last one, and after any step that ends at least
    ``every_n_seconds`` after the previous line, when the Trainer draws no progress bar (``train.py`` turns its
    bar off when stdout is not a terminal: a bar then shows only its last frame). The total is the Trainer's
    ``estimated_stepping_batches`` (``max_steps``, or the steps of ``max_epochs``); the metrics are those the module
    logs with ``prog_bar=True``; the speed counts the steps of this run only (a resumed run starts its clock anew).

    Args:
        every_n_seconds: the least time between two lines (0: a line after every step).
        always: print even when the Trainer has a progress bar.
    """

    def __init__(self, every_n_seconds: float = 60.0, always: bool = False) -> None:
        if not every_n_seconds >= 0:
            raise ValueError(f"every_n_seconds must be a number of seconds >= 0, got {every_n_seconds!r}")
        self.every_n_seconds = every_n_seconds
        self.always = always
        self._start: tuple[float, int] | None = None
        self._last_line = -math.inf

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = (time.monotonic(), trainer.global_step)
        self._last_line = -math.inf

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if not trainer.is_global_zero or (trainer.progress_bar_callback is not None and not self.always):
            return
        now = time.monotonic()
        total = trainer.estimated_stepping_batches
        last = math.isfinite(total) and trainer.global_step >= total
        if now - self._last_line >= self.every_n_seconds or last or self._last_line == -math.inf:
            self._last_line = now
            print(self.line(trainer, now), flush=True)

    def line(self, trainer: Trainer, now: float) -> str:
        """The progress line at ``now`` (``time.monotonic()``)."""
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        parts = [f"step {step}/{int(total)} ({step / total:.0%})" if math.isfinite(total) else f"step {step}",
                 f"epoch {trainer.current_epoch}"]
        parts += [f"{name} {float(value):.4g}" for name, value in trainer.progress_bar_metrics.items()]
        started, first_step = self._start
        steps = step - first_step
        if steps > 0:
            per_step = (now - started) / steps
            parts.append(f"{per_step:.3g} s/step")
            if math.isfinite(total):
                parts.append(f"eta {timedelta(seconds=round(per_step * max(total - step, 0)))}")
        return "  ".join(parts)
