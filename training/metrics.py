"""Classification metrics: one accumulator for the training loop's validation and for `resnet-eval`.

Counts are summed exactly (top-1 and top-5 hits as integers in float64, the loss as a float64 sum) and, under
DDP, across ranks: each rank feeds its own shard and `all_reduce()` adds them, so no sample is counted twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training import distributed


class ClassificationMeter:
    """Accumulates top-1, top-5, cross-entropy and the confusion matrix (rows: true class) over batches."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.k = min(5, num_classes)
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # top1 hits, top5 hits, loss sum, count
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch: logits (N, K), integer labels (N,) on the meter's device."""
        if len(labels) == 0:
            return
        logits = logits.float()
        top = logits.topk(self.k, dim=1).indices
        self.sums += torch.stack([
            (top[:, 0] == labels).sum().double(),
            (top == labels[:, None]).any(1).sum().double(),
            F.cross_entropy(logits, labels, reduction="sum").double(),
            torch.tensor(len(labels), dtype=torch.float64, device=labels.device),
        ])
        k = self.num_classes
        self.confusion += torch.bincount(labels * k + top[:, 0], minlength=k * k).view(k, k)

    def all_reduce(self) -> ClassificationMeter:
        """Sum every rank's counts into every rank's meter (a no-op in one process)."""
        distributed.all_reduce_sum(self.sums)
        distributed.all_reduce_sum(self.confusion)
        return self

    @property
    def count(self) -> int:
        return int(self.sums[3].item())

    def result(self, classes: list[str] | None = None) -> dict[str, Any]:
        """`count`, `top1`, `top5`, `loss` (means), `confusion` (numpy), and `per_class` when `classes` is given."""
        n = max(1.0, self.sums[3].item())
        cm = self.confusion.cpu().numpy()
        out: dict[str, Any] = {
            "count": self.count,
            "top1": self.sums[0].item() / n,
            "top5": self.sums[1].item() / n,
            "loss": self.sums[2].item() / n,
            "confusion": cm,
        }
        if classes is not None:
            out["per_class"] = per_class_accuracy(cm, classes)
        return out


def per_class_accuracy(cm: np.ndarray, classes: list[str]) -> dict[str, dict[str, Any]]:
    """`{class: {"accuracy", "count"}}` from a confusion matrix; accuracy is None for a class with no images."""
    totals = cm.sum(axis=1)
    return {c: {"accuracy": float(cm[i, i] / totals[i]) if totals[i] else None, "count": int(totals[i])}
            for i, c in enumerate(classes)}
