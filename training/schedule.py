"""Learning rate: linear scaling rule, linear warmup, then cosine or step decay. A pure function of the step,
which `LrSchedule` applies to the optimiser."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from training.config import TrainConfig


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


@dataclass
class LrSchedule:
    """The lr of every optimiser step: peak lr x the group's `lr_mult` x `lr_factor(step)`.

    Like torch's lr schedulers it counts the steps taken (`step`); a resumed run sets it from `last.pt`.
    """

    peak_lr: float
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    schedule: str
    min_ratio: float = 0.0
    milestones: Sequence[int] = ()
    gamma: float = 0.1
    step: int = 0

    @classmethod
    def from_config(cls, cfg: TrainConfig, world_size: int, batches_per_epoch: int) -> LrSchedule:
        """`--lr` scaled to the global batch; epochs of `--max-steps-per-epoch` steps at most."""
        steps = min(batches_per_epoch, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else batches_per_epoch
        return cls(scaled_lr(cfg.lr, cfg.batch_size * world_size, cfg.lr_scaling), steps_per_epoch=steps,
                   total_steps=cfg.epochs * steps, warmup_steps=round(cfg.warmup_epochs * steps),
                   schedule=cfg.schedule, min_ratio=cfg.min_lr_ratio, milestones=cfg.step_milestones,
                   gamma=cfg.step_gamma)

    def lr(self, step: int) -> float:
        """The peak lr scaled for optimiser step `step` (0-based)."""
        return self.peak_lr * self.factor(step)

    def factor(self, step: int) -> float:
        return lr_factor(step, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                         steps_per_epoch=self.steps_per_epoch, schedule=self.schedule, min_ratio=self.min_ratio,
                         milestones=self.milestones, gamma=self.gamma)

    def apply(self, optimizer: torch.optim.Optimizer) -> None:
        """Set every parameter group's lr for the next step."""
        factor = self.factor(self.step)
        for g in optimizer.param_groups:
            g["lr"] = self.peak_lr * g["lr_mult"] * factor
