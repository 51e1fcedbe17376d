"""The inference backend protocol: a preprocessed batch in, CPU logits out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from models.accuracy import AccuracyRecord

RUNTIMES = ("torch", "onnxruntime", "openvino")  # what runs a model; `auto` resolves to one (models.backends)


@runtime_checkable
class InferenceBackend(Protocol):
    name: str  # one of RUNTIMES
    device: str  # "cpu", "cuda:0"
    precision: str  # one of models.accuracy.PRECISIONS: the arithmetic the model runs in
    accuracy_by_runtime: dict[str, AccuracyRecord]  # what `resnet-export` measured, per runtime ({} for fp32)

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """float32 (N, C, H, W), already through models.preprocess -> float32 logits (N, K) on the CPU."""
        ...


def serving_accuracy(backend: InferenceBackend) -> AccuracyRecord | None:
    """The record measured on the runtime that serves (None: exact fp32, or not checked on this runtime)."""
    return backend.accuracy_by_runtime.get(backend.name)
