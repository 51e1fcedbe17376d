"""Learning rate: linear scaling rule, linear warmup, then cosine or step decay. A pure function of the step."""

from __future__ import annotations

import math
from collections.abc import Sequence


def scaled_lr(lr: float, global_batch: int, rule: str) -> float:
    """Goyal et al. 2017: `lr` is given per 256 images and scaled linearly with the global batch size."""
    return lr * global_batch / 256 if rule == "linear" else lr


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, steps_per_epoch: int, schedule: str,
              min_ratio: float = 0.0, milestones: Sequence[int] = (), gamma: float = 0.1) -> float:
    """Multiplier of the peak lr at optimiser step `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "step":
        epoch = step // max(1, steps_per_epoch)
        return gamma ** sum(epoch >= m for m in milestones)
    return 1.0
