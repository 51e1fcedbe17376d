"""The registry: names in, models out; unknown and duplicate names are refused loudly."""

from __future__ import annotations

import pytest
import torch

from models import create_model, default_preprocess, list_models
from models.registry import _REGISTRY, register_model
from models.resnet import ResNet

IMAGENET = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
            "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"]
CIFAR = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]


def test_list_models_has_every_architecture_sorted():
    names = list_models()
    assert set(names) == set(IMAGENET + CIFAR)
    assert names == sorted(names)


def test_create_model_builds_the_named_architecture():
    model = create_model("resnet18", num_classes=7)
    assert isinstance(model, ResNet)
    assert model.fc.out_features == 7
    assert len(model.layer2) == 2


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown architecture 'resnet19'") as e:
        create_model("resnet19")
    for name in ("resnet18", "resnext50_32x4d", "resnet110"):
        assert name in str(e.value)


def test_duplicate_registration_is_refused():
    before = dict(_REGISTRY)

    def resnet18(num_classes: int = 1000):  # same name as a registered builder
        raise AssertionError("must never be called")

    with pytest.raises(ValueError, match="already registered"):
        register_model(resnet18)
    assert before == _REGISTRY
    assert isinstance(create_model("resnet18", num_classes=2), ResNet)


@pytest.mark.parametrize("name", sorted(IMAGENET + CIFAR))
def test_tiny_forward_and_backward(name: str):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).train()
    x = torch.randn(2, 3, 32, 32)  # ImageNet nets end at 1x1 here: enough for gradients to reach every layer
    out = model(x)
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert torch.isfinite(model.conv1.weight.grad).all() and model.fc.weight.grad.abs().sum() > 0


def test_default_preprocess_comes_from_the_builders_registration():
    from models.registry import _DEFAULTS, _REGISTRY, CIFAR, IMAGENET, model_defaults, register_model

    @register_model(defaults=CIFAR)
    def tiny_cifar_net(num_classes: int = 10, **kwargs):
        return create_model("resnet20", num_classes=num_classes, **kwargs)

    try:
        assert model_defaults("tiny_cifar_net") is CIFAR and model_defaults("resnet50") is IMAGENET
        spec = default_preprocess("tiny_cifar_net")
        assert (spec.resize, spec.crop) == (32, 32)  # no list of model names anywhere: the registration says it
        assert (default_preprocess("tiny_cifar_net", small_input=False).crop) == 224
        assert (default_preprocess("resnet18", small_input=True).crop) == 32
    finally:
        del _REGISTRY["tiny_cifar_net"], _DEFAULTS["tiny_cifar_net"]
