"""Feature maps: the activations are the model's own, and the grid has one tile per channel."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from app.services.feature_maps import layer_activations, render_grid
from models import create_model


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
    assert torch.allclose(layer_activations(model, x, layer), seen["out"])


def test_conv1_is_after_bn_and_relu(model):
    x = torch.randn(1, 3, 32, 32)
    out = layer_activations(model, x, "conv1")
    with torch.inference_mode():
        expected = model.relu(model.bn1(model.conv1(x)))
    assert torch.allclose(out, expected) and out.min() >= 0


def test_unknown_layer_is_refused(model):
    with pytest.raises(ValueError, match="unknown layer 'fc'"):
        layer_activations(model, torch.randn(1, 3, 32, 32), "fc")


def test_grid_layout_and_scaling():
    maps = torch.stack([torch.full((8, 8), float(i)) for i in range(5)])
    maps[0, 0, 0] = 10.0  # channel 0 has contrast, the others are flat
    img = Image.open(io.BytesIO(render_grid(maps)))
    tile, pad = 64, 2  # 8x8 maps are scaled up to 64 px
    assert img.size == (3 * (tile + pad) + pad, 2 * (tile + pad) + pad)  # 5 tiles -> 3 columns, 2 rows
    assert img.getpixel((pad, pad)) == 255  # the max of channel 0
    assert img.getpixel((pad + 10, pad + 10)) == 0
