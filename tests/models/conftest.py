"""Fixtures for the model zoo tests: tiny models, saved checkpoints and encoded images built on the fly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from devkit.images import encode, noise
from models import PreprocessSpec, create_model, save_checkpoint

CLASSES = ["cat", "dog", "bird"]  # the tests that compare against these spell them out too
TINY = {"num_classes": 3, "widths": (4, 8, 16)}


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20", **TINY).eval()


@pytest.fixture
def tiny_spec() -> PreprocessSpec:
    return PreprocessSpec(resize=36, crop=32)


@pytest.fixture
def saved_checkpoint(tmp_path: Path, tiny_model, tiny_spec) -> Path:
    """A project checkpoint of the tiny resnet20 (with class_indices.json beside it)."""
    return save_checkpoint(
        tmp_path / "ckpt" / "model.pt",
        tiny_model,
        arch="resnet20",
        arch_kwargs=TINY,
        classes=CLASSES,
        preprocess=tiny_spec,
        metrics={"val_top1": 0.5, "epoch": 3},
        training={"config": {"lr": 0.1, "milestones": (1, 2)}},
    )


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    """`make_image(w, h, fmt="PNG", mode="RGB", color=...)` -> encoded bytes."""

    def make(w: int, h: int, fmt: str = "PNG", mode: str = "RGB", color=None, **save_kwargs) -> bytes:
        if color is None:
            img = noise(w, h, seed=0).convert(mode)
        else:
            img = Image.new(mode, (w, h), color)
        return encode(img, fmt, **save_kwargs)

    return make
