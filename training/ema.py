"""Exponential moving average of the weights (Polyak averaging); buffers are copied, not averaged."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        self.updates = 0
        self._params = {n for n, _ in self.module.named_parameters()}
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = model.state_dict()
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))  # early on, follow the model closely
        for name, v in self.module.state_dict().items():
            if name in self._params:
                v.mul_(decay).add_(src[name].detach(), alpha=1 - decay)
            else:
                v.copy_(src[name])

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
