"""The PyTorch backend: the checkpoint's own model, on its device."""

from __future__ import annotations

import torch

from models import Checkpoint


class TorchBackend:
    """Runs `checkpoint.model` in eval mode; optionally in channels_last memory format (faster convs on CUDA)."""

    name = "torch"
    precision = "fp32"

    def __init__(self, checkpoint: Checkpoint, device: torch.device, channels_last: bool) -> None:
        self.model = checkpoint.model.to(device).eval()
        self.torch_device = device
        self.device = str(device)
        self.channels_last = channels_last
        self.accuracy: dict[str, float] = {}
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = batch.to(self.torch_device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu()
