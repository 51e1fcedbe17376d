"""What trains and how: parameter groups (no decay on norms and biases), the optimiser, frozen parts, pretrained
weights, and the optimiser state as stored in a checkpoint."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models import CheckpointError
from models.checkpoint import read_state_dict
from models.errors import ConfigError
from training.config import TrainConfig


def classifier_prefix(model: nn.Module) -> str:
    """The parameter-name prefix of the model's classifier (`fc.` for a ResNet), found by identity."""
    head = model.get_classifier()  # type: ignore[operator]
    return next(name for name, m in model.named_modules() if m is head) + "."


def optimizer_state_from_file(state: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint stores dict keys as strings; the optimiser indexes its per-parameter state by int.

    Without this, `load_state_dict` silently keeps the momentum / Adam moments under keys no parameter uses.
    """
    return {**state, "state": {int(k): v for k, v in state["state"].items()}}


def load_pretrained(model: nn.Module, path: str) -> None:
    """torchvision-format weights (or a project checkpoint) into `model`, all but the classifier (new classes).

    `ConfigError` when the file cannot be read or does not fit the model.
    """
    try:
        state = read_state_dict(path)
    except CheckpointError as e:
        raise ConfigError(f"--pretrained {e}") from None
    head = classifier_prefix(model)
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches (e.g. a 7x7 stem into a small-input 3x3 stem)
        raise ConfigError(f"--pretrained {path}: does not fit the model: {' '.join(str(e).split())[:500]}") from None
    bad = [k for k in missing if not k.startswith(head)]
    if bad or unexpected:
        raise ConfigError(
            f"--pretrained {path}: does not fit the model (missing {bad[:5]}, unexpected {unexpected[:5]})"
        )


def freeze_backbone(model: nn.Module) -> None:
    """Train only the classifier: every other parameter stops receiving gradients."""
    head = classifier_prefix(model)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(head))


def set_train_mode(model: nn.Module) -> None:
    """Training mode, except batch norms whose parameters are frozen: their statistics stay as loaded."""
    model.train()
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            m.eval()


def param_groups(model: nn.Module, cfg: TrainConfig, base_lr: float) -> list[dict[str, Any]]:
    """Weight decay off for norm layers and biases (if asked); the classifier may get its own lr."""
    head = classifier_prefix(model)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (cfg.no_decay_norm_bias and p.ndim <= 1)
        groups.setdefault((name.startswith(head), decay), []).append(p)
    return [
        {
            "params": ps,
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "lr_mult": cfg.head_lr_mult if is_head else 1.0,
            "lr": base_lr,
        }
        for (is_head, decay), ps in groups.items()
    ]


def build_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups)
