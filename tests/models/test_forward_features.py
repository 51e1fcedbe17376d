"""forward_features(x, upto=layer): the activations are the model's own (no hooks needed by its callers)."""

from __future__ import annotations

import pytest
import torch

from models import create_model


def forward(model, x, layer):
    with torch.inference_mode():
        return model.forward_features(x, upto=layer)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("resnet18", num_classes=4).eval()


@pytest.mark.parametrize("layer", ["layer1", "layer2", "layer3", "layer4"])
def test_activations_match_forward_hooks(model, layer):
    x = torch.randn(1, 3, 32, 32)
    seen = {}
    handle = getattr(model, layer).register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    with torch.inference_mode():
        model(x)
    handle.remove()
    assert torch.allclose(forward(model, x, layer), seen["out"])


def test_conv1_is_after_bn_and_relu(model):
    x = torch.randn(1, 3, 32, 32)
    out = forward(model, x, "conv1")
    with torch.inference_mode():
        expected = model.relu(model.bn1(model.conv1(x)))
    assert torch.allclose(out, expected) and out.min() >= 0


def test_unknown_layer_is_refused(model):
    with pytest.raises(ValueError, match="unknown layer 'fc'"):
        forward(model, torch.randn(1, 3, 32, 32), "fc")


def test_without_upto_it_is_the_last_stage(model):
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(forward(model, x, None), forward(model, x, "layer4"))
