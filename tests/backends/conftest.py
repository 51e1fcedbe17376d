"""Tiny checkpoints for the backend tests: a Fashion-MNIST-shaped resnet20 and a torchvision-shaped resnet18
(built by tests/helpers/checkpoints.py; the service's 3-class `checkpoint` is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.checkpoints import class_names, fashion_mnist_spec, make_checkpoint

from models import Checkpoint, PreprocessSpec, load_checkpoint


def loaded_checkpoint(path: Path, arch: str, spec: PreprocessSpec, num_classes: int, seed: int = 0,
                      **kwargs: object) -> Checkpoint:
    """A random `arch` with `num_classes` classes (class_0, class_1, ...) saved at `path`, loaded back."""
    return load_checkpoint(make_checkpoint(path, class_names(num_classes), arch=arch, spec=spec, seed=seed, **kwargs))


@pytest.fixture(scope="session")
def checkpoint_factory():
    """`loaded_checkpoint` for tests that need one of their own (another seed, another class list)."""
    return loaded_checkpoint


@pytest.fixture(scope="session")
def resnet20_ckpt(tmp_path_factory):
    return loaded_checkpoint(tmp_path_factory.mktemp("r20") / "model.pt", "resnet20", fashion_mnist_spec(), 10)


@pytest.fixture(scope="session")
def resnet18_ckpt(tmp_path_factory):
    spec = PreprocessSpec(resize=72, crop=64)
    return loaded_checkpoint(tmp_path_factory.mktemp("r18") / "model.pt", "resnet18", spec, 7, seed=1)


@pytest.fixture(scope="session")
def resnet20_onnx(resnet20_ckpt, tmp_path_factory):
    from models.onnx_export import export_onnx

    return export_onnx(resnet20_ckpt, tmp_path_factory.mktemp("r20onnx") / "model.onnx")


@pytest.fixture(scope="session")
def resnet18_onnx(resnet18_ckpt, tmp_path_factory):
    from models.onnx_export import export_onnx

    return export_onnx(resnet18_ckpt, tmp_path_factory.mktemp("r18onnx") / "model.onnx")
