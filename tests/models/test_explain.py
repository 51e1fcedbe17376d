"""models/explain.py and models/explain_render.py: the heatmap's contract, the private copy, the overlay PNG and the
folder of explanations `resnet-predict --explain DIR` writes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli.predict import main as predict_main
from devkit.checkpoints import SPEC, make_checkpoint, random_model
from devkit.images import image_bytes
from models.explain import METHODS, default_layer, explain, explainable_copy, upsample_and_scale
from models.explain_render import (
    MIN_SIDE,
    colour_lut,
    crop_rgb,
    output_names,
    overlay_image,
    overlay_png,
    write_explanations,
)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return random_model("resnet20", seed=2, num_classes=5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("layer", ["conv1", "layer1", "layer2", "layer3"])
def test_heatmap_is_in_0_1_at_the_crop_size(model, method, layer):
    image = torch.randn(3, 32, 32)
    result = explain(explainable_copy(model), image, None, method, layer)
    assert result.heatmap.shape == (32, 32) and result.layer == layer and result.method == method
    assert float(result.heatmap.min()) >= 0 and float(result.heatmap.max()) <= 1
    with torch.no_grad():
        logits = model(image[None])[0]
    assert torch.allclose(result.logits, logits, atol=1e-5)
    assert result.target == int(logits.argmax())  # the top-1 class by default


def test_default_layer_is_the_last_stage(model):
    assert default_layer(model) == "layer3"
    assert explain(explainable_copy(model), torch.randn(3, 32, 32)).layer == "layer3"


def test_unknown_layer_method_or_target_is_refused(model):
    private, image = explainable_copy(model), torch.randn(3, 32, 32)
    with pytest.raises(ValueError, match="unknown layer 'layer4'"):
        explain(private, image, None, "gradcam", "layer4")
    with pytest.raises(ValueError, match="unknown method 'saliency'"):
        explain(private, image, None, "saliency")
    with pytest.raises(ValueError, match=r"target 5 is outside 0..4"):
        explain(private, image, 5)


def test_the_original_module_is_never_changed(model):
    inplace = [m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    private = explainable_copy(model)
    for method in METHODS:
        explain(private, torch.randn(3, 32, 32), 1, method, "conv1")
    assert [m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU)] == inplace
    assert all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in [*model.modules(), *private.modules()])
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_scaling_is_min_max_and_a_flat_map_is_zero():
    cam = torch.tensor([[1.0, 3.0], [2.0, 5.0]])
    up = upsample_and_scale(cam, (2, 2))
    assert torch.allclose(up, (cam - 1) / 4)
    assert torch.equal(upsample_and_scale(torch.full((3, 3), 2.0), (6, 6)), torch.zeros(6, 6))


def test_overlay_blends_the_heatmap_over_the_original_colours():
    pixels = torch.rand(3, 32, 32)
    image = (pixels - torch.tensor(SPEC.mean).view(3, 1, 1)) / torch.tensor(SPEC.std).view(3, 1, 1)
    assert np.abs(crop_rgb(image, SPEC).astype(int) - (pixels.permute(1, 2, 0).numpy() * 255).round()).max() <= 1
    picture = overlay_image(image, torch.zeros(32, 32), SPEC)
    scale = -(-MIN_SIDE // 32)
    assert picture.height == 32 * scale and picture.width > 32 * scale  # enlarged, with the colour scale beside
    expected = 0.5 * crop_rgb(image, SPEC)[0, 0] + 0.5 * colour_lut()[0]
    assert np.abs(np.array(picture.getpixel((0, 0))) - expected).max() <= 1
    bar = 32 * scale + 10  # inside the colour bar: 1 at the top, 0 at the bottom
    assert picture.getpixel((bar, 0)) == tuple(colour_lut()[255])
    assert picture.getpixel((bar, 32 * scale - 1)) == tuple(colour_lut()[0])
    assert Image.open(io.BytesIO(overlay_png(image, torch.ones(32, 32), SPEC))).format == "PNG"


def test_output_names_keep_stems_and_never_collide():
    assert output_names(["a/cat.jpg", "b/cat.png", "dog.webp", "c/cat.bmp"]) == ["cat.png", "cat-2.png", "dog.png",
                                                                                  "cat-3.png"]


def test_write_explanations_one_png_per_readable_image(model, tmp_path, capsys):
    files = []
    for i in range(3):
        path = tmp_path / "in" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(image_bytes("PNG", seed=i))
        files.append(str(path))
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    written = write_explanations(model, SPEC, [*files, str(tmp_path / "in" / "broken.png")], tmp_path / "out")
    assert written == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert "broken.png: cannot read image" in capsys.readouterr().err


def test_resnet_predict_explain_writes_a_folder(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "model.pt")
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        (folder / f"photo{i}.jpg").write_bytes(image_bytes("JPEG", seed=i))
    predict_main([str(checkpoint), str(folder), "--explain", str(tmp_path / "heatmaps"), "--no-progress"])
    assert sorted(p.name for p in (tmp_path / "heatmaps").iterdir()) == ["photo0.png", "photo1.png"]
    assert f"wrote 2 heatmaps to {tmp_path / 'heatmaps'}" in capsys.readouterr().err
    assert Path(tmp_path / "heatmaps" / "photo0.png").read_bytes().startswith(b"\x89PNG")
