"""Tiny checkpoints for the backend tests: a Fashion-MNIST-shaped resnet20 and a torchvision-shaped resnet18."""

from __future__ import annotations

import pytest
import torch

import models
from models import PreprocessSpec


def _randomize_bn(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so the export must carry them exactly (fresh BN is the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def make_checkpoint(path, arch: str, spec: PreprocessSpec, num_classes: int, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    arch_kwargs = {"num_classes": num_classes, "in_channels": spec.channels, **kwargs}
    model = _randomize_bn(models.create_model(arch, **arch_kwargs), seed)
    classes = [f"class_{i}" for i in range(num_classes)]
    models.save_checkpoint(path, model, arch=arch, arch_kwargs=arch_kwargs, classes=classes, preprocess=spec,
                           metrics={"val_top1": 0.5})
    return models.load_checkpoint(path)


@pytest.fixture(scope="session")
def checkpoint_factory():
    """`make_checkpoint` for tests that need one of their own (another seed, another class list)."""
    return make_checkpoint


FMNIST_SPEC = PreprocessSpec(resize=28, crop=28, mean=(0.286,), std=(0.353,), color_mode="L")


@pytest.fixture(scope="session")
def resnet20_ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("r20") / "model.pt", "resnet20", FMNIST_SPEC, 10)


@pytest.fixture(scope="session")
def resnet18_ckpt(tmp_path_factory):
    spec = PreprocessSpec(resize=72, crop=64)
    return make_checkpoint(tmp_path_factory.mktemp("r18") / "model.pt", "resnet18", spec, 7, seed=1)


@pytest.fixture(scope="session")
def resnet20_onnx(resnet20_ckpt, tmp_path_factory):
    from models.onnx_export import export_onnx

    return export_onnx(resnet20_ckpt, tmp_path_factory.mktemp("r20onnx") / "model.onnx")


@pytest.fixture(scope="session")
def resnet18_onnx(resnet18_ckpt, tmp_path_factory):
    from models.onnx_export import export_onnx

    return export_onnx(resnet18_ckpt, tmp_path_factory.mktemp("r18onnx") / "model.onnx")
