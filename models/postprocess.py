"""Logits to the answer clients see: softmax scores of the `k` best classes, best first. The one definition.

Callers: the service (`POST /v1/predict`, `/v1/predict/batch`; app/services/inference.py) and `resnet-predict`
(cli/predict.py), so that both give the same `label`, `index` and `score` for the same image.
"""

from __future__ import annotations

from typing import TypedDict

import torch


class ClassScore(TypedDict):
    label: str
    index: int
    score: float


def top_k(logits: torch.Tensor, classes: list[str], k: int) -> list[list[ClassScore]]:
    """For each row of `logits` (N, K), or a single row (K,), the `k` best classes (clamped to K), best first."""
    rows = logits.float().reshape(-1, logits.shape[-1])
    scores, indices = torch.softmax(rows, dim=1).topk(min(k, len(classes)), dim=1)
    return [
        [ClassScore(label=classes[i], index=i, score=s) for s, i in zip(row_s.tolist(), row_i.tolist(), strict=True)]
        for row_s, row_i in zip(scores, indices, strict=True)
    ]
