"""Tiny project checkpoints with random weights, for the tests and the speed benchmarks (nothing is downloaded).

BatchNorm statistics and affine parameters are randomized too: fresh BatchNorm is the identity in eval mode, so
different images would barely get different scores and an ONNX export that dropped BatchNorm would go unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from models import PreprocessSpec, create_model, save_checkpoint

CLASSES = ["cat", "dog", "bird"]
SPEC = PreprocessSpec(resize=36, crop=32)  # RGB, 32 px crops: small enough for a forward pass in milliseconds
METRICS = {"val_top1": 0.5, "epoch": 3}


def fashion_mnist_spec(size: int = 28) -> PreprocessSpec:
    """Fashion-MNIST's preprocessing (one channel, the data set's mean and std) at `size` pixels."""
    return PreprocessSpec(resize=size, crop=size, mean=(0.286,), std=(0.353,), color_mode="L")


def class_names(n: int) -> list[str]:
    return [f"class_{i}" for i in range(n)]


def randomize_batchnorm(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, drawn from their own generator; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def random_model(arch: str = "resnet20", seed: int = 0, **arch_kwargs: object) -> torch.nn.Module:
    """`create_model(arch, **arch_kwargs)` initialised from `seed`, with randomized BatchNorm, in eval mode."""
    torch.manual_seed(seed)
    return randomize_batchnorm(create_model(arch, **arch_kwargs), seed)


def make_checkpoint(path: Path, classes: Sequence[str] = CLASSES, *, arch: str = "resnet20",
                    spec: PreprocessSpec = SPEC, seed: int = 0, metrics: Mapping[str, object] = METRICS,
                    **arch_kwargs: object) -> Path:
    """A project checkpoint of a random `arch` for `classes` and `spec` at `path` (class_indices.json beside it).

    The same arguments give the same weights; `arch_kwargs` go to the builder (num_classes and in_channels follow
    from `classes` and `spec`)."""
    arch_kwargs = {"num_classes": len(classes), "in_channels": spec.channels, **arch_kwargs}
    model = random_model(arch, seed, **arch_kwargs)
    return save_checkpoint(path, model, arch=arch, arch_kwargs=arch_kwargs, classes=list(classes), preprocess=spec,
                           metrics=dict(metrics))
