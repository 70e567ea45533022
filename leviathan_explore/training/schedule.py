"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_lr_ratio * lr``.

The rate is a pure function of the step, so a resumed run needs only the step
to continue the schedule exactly.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """The learning rate used for optimizer step ``step`` (0-based).

    warm-up:  lr * (step + 1) / warmup_steps                        for step < warmup_steps
    cosine:   min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2,  t = (step - warmup) / (total - warmup)
    """
    min_lr = min_lr_ratio * lr
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


class WarmupCosine:
    """``lr_at`` bound to a run's settings; ``apply(optimizer, step)`` sets every group's rate."""

    def __init__(self, lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float):
        self.lr, self.total_steps = lr, total_steps
        self.warmup_steps, self.min_lr_ratio = warmup_steps, min_lr_ratio

    def __call__(self, step: int) -> float:
        return lr_at(step, lr=self.lr, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                     min_lr_ratio=self.min_lr_ratio)

    def apply(self, optimizer, step: int) -> float:
        rate = self(step)
        for group in optimizer.param_groups:
            group["lr"] = rate
        return rate

    def state_dict(self) -> dict:
        return {"lr": self.lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "min_lr_ratio": self.min_lr_ratio}
