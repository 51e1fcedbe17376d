"""Fixtures for the training worker tests: tiny generated datasets and one short training run shared by many tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.training.tinydata import TINY_ARGS, make_image_folder, write_idx


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "data", **kwargs) -> Path:
        kwargs.setdefault("train", 8)
        kwargs.setdefault("val", 4)
        return make_image_folder(tmp_path / name, **kwargs)

    return make


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> dict:
    """One 2-epoch run on a generated 3-class ImageFolder (40 train / 10 val images per class, 15 steps an epoch)."""
    from training.config import parse_config
    from training.train import run

    tmp = tmp_path_factory.mktemp("trained")
    data = make_image_folder(tmp / "data", train=40, val=10)
    out = tmp / "run"
    metrics = run(parse_config(["--data", str(data), "--out", str(out), "--epochs", "2", *TINY_ARGS,
                                   "--batch-size", "8"]))
    return {"data": data, "out": out, "metrics": metrics}


@pytest.fixture(scope="session")
def tiny_fashion_dir(tmp_path_factory) -> Path:
    """A folder of Fashion-MNIST-format idx files: 60 train and 30 test images of 28x28, labels 0..9."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 30)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root
