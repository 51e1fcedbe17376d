"""The inference backend protocol (docs/CONTRACTS.md): a preprocessed batch in, CPU logits out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class InferenceBackend(Protocol):
    name: str  # "torch" | "onnxruntime"
    device: str  # "cpu", "cuda:0"

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 (N, C, H, W), already through models.preprocess -> float32 logits (N, K) on the CPU."""
        ...
