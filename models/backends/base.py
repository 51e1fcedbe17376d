"""The inference backend protocol (docs/CONTRACTS.md): a preprocessed batch in, CPU logits out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class InferenceBackend(Protocol):
    name: str  # "torch" | "onnxruntime"
    device: str  # "cpu", "cuda:0"
    precision: str  # "fp32" | "bf16" | "int8": the arithmetic the model runs in
    accuracy: dict[str, float]  # what `resnet-export` measured on held-out data ({} for the exact fp32 path):
    # top1_fp32, top1 (this precision), agreement (share of identical top-1), eval_size

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 (N, C, H, W), already through models.preprocess -> float32 logits (N, K) on the CPU."""
        ...
