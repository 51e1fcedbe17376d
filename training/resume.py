"""`--resume`: which config a run continues with, and the state `last.pt` stores to continue it exactly."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import CheckpointError
from models.checkpoint import read_training_state
from models.errors import ConfigError
from training.config import TrainConfig, config_from_dict
from training.distributed import DistInfo
from training.ema import ModelEMA
from training.machine import resolve_auto
from training.rng import rng_state

log = logging.getLogger("resnet-train")
# Flags a resumed run takes from the command line: how long and where it runs, not what it learns.
SAFE_ON_RESUME = ("epochs", "workers", "progress", "device", "threads", "resume", "out", "max_steps_per_epoch",
                  "tensorboard", "compile")


def start_or_resume(cfg: TrainConfig, info: DistInfo) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The config to run and, with `--resume` and a `last.pt`, its resume state.

    A resumed run keeps its stored config. Flags that only say how long and where it runs (`SAFE_ON_RESUME`) are
    applied, and said; any other flag that differs from the stored run is a `ConfigError` with its name and both
    values.
    """
    cfg.amp, cfg.channels_last, notes = resolve_auto(cfg.amp, cfg.channels_last, info.device)
    last = Path(cfg.out) / "last.pt"
    if not (cfg.resume and last.exists()):
        if cfg.resume and info.is_main:
            log.info("--resume: no %s yet, starting a new run", last)
        if info.is_main and notes:
            log.info("chose for this machine: %s", "; ".join(notes))
        return cfg, None
    try:
        stored_dict, resume = read_training_state(last)
    except CheckpointError as e:
        raise ConfigError(f"--resume: {e}") from None
    stored = config_from_dict(stored_dict)
    differ = [n for n in changed_flags(cfg) if n not in SAFE_ON_RESUME and getattr(cfg, n) != getattr(stored, n)]
    if differ:
        listed = ", ".join(f"--{n.replace('_', '-')} {getattr(cfg, n)} (stored: {getattr(stored, n)})" for n in differ)
        raise ConfigError(f"--resume: {listed} differ from the run stored in {last}; resume without them, or start a "
                          "new run with another --out")
    applied = [n for n in SAFE_ON_RESUME if getattr(cfg, n) != getattr(stored, n)]
    for name in SAFE_ON_RESUME:
        setattr(stored, name, getattr(cfg, name))
    if info.is_main and applied:
        log.info("--resume: applying %s", ", ".join(f"--{n.replace('_', '-')} {getattr(cfg, n)}" for n in applied))
    return stored, resume


def changed_flags(cfg: TrainConfig) -> list[str]:
    """The fields set on the command line; for a config built in code, those that differ from the defaults."""
    if cfg.given:
        return sorted(cfg.given)
    defaults = TrainConfig()
    return [f.name for f in dataclasses.fields(TrainConfig)
            if f.name != "given" and getattr(cfg, f.name) != getattr(defaults, f.name)]


def resume_state(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 model_ema: ModelEMA | None, *, epoch: int, step: int, best: dict[str, Any],
                 history: list[dict[str, Any]]) -> dict[str, Any]:
    """What `last.pt` stores to continue exactly: weights, optimiser, scaler, EMA, progress and every RNG."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "ema": model_ema.state_dict() if model_ema is not None else None, "epoch": epoch, "step": step,
            "best": best, "history": history, "rng": rng_state()}
