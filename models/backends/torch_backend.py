"""The PyTorch backend: the checkpoint's own model, on its device."""

from __future__ import annotations

import torch

from models import Checkpoint


class TorchBackend:
    """Runs `checkpoint.model` in eval mode; in channels_last memory format on CUDA, where cuDNN's convolutions are
    faster in it (on the CPU the default layout is as fast for the batch sizes we serve)."""

    name = "torch"
    precision = "fp32"

    def __init__(self, checkpoint: Checkpoint, device: torch.device, channels_last: bool | None = None) -> None:
        channels_last = device.type == "cuda" if channels_last is None else channels_last
        self.model = checkpoint.model.to(device).eval()
        self.torch_device = device
        self.device = str(device)
        self.channels_last = channels_last
        self.accuracy_by_runtime: dict = {}
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = batch.to(self.torch_device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu()
