"""`POST /v1/explain`'s JSON heatmap equals Grad-CAM (and LayerCAM) written here from their definitions, within 1e-4,
for the default model (weights/model.pt, served by ONNX Runtime: explanations still use its torch model) and for a
torchvision-shaped ResNet-18 with random weights at 224 px. No Captum and no hooks here: the reference walks the
network by hand, takes the gradient of the class logit with respect to the layer's output, and follows the formula.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from app.core.config import Settings
from devkit.asgi import serve
from devkit.checkpoints import class_names, make_checkpoint
from devkit.images import image_bytes
from models import PreprocessSpec, load_checkpoint, load_image_tensor

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "weights" / "model.pt"
TOLERANCE = 1e-4


def layer_output(model: torch.nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The stem (conv, BN, ReLU) and the stages up to `layer`."""
    a = model.relu(model.bn1(model.conv1(x)))
    if layer == "conv1":
        return a
    a = model.maxpool(a)
    for name in model.feature_layers[1:]:
        a = getattr(model, name)(a)
        if name == layer:
            return a
    raise AssertionError(layer)


def logits_from(model: torch.nn.Module, a: torch.Tensor, layer: str) -> torch.Tensor:
    """The rest of the network, from `layer`'s output to the logits."""
    stages = model.feature_layers[1:]
    if layer == "conv1":
        a = model.maxpool(a)
    for name in stages[stages.index(layer) + 1:] if layer != "conv1" else stages:
        a = getattr(model, name)(a)
    return model.fc(torch.flatten(model.avgpool(a), 1))


def reference_map(model: torch.nn.Module, image: torch.Tensor, target: int | None, layer: str,
                  method: str) -> tuple[torch.Tensor, int]:
    """Grad-CAM: ReLU(sum_c mean_ij(dy/dA_c) A_c); LayerCAM: ReLU(sum_c ReLU(dy/dA_c) A_c); then bilinear upsampling
    to the image and min-max scaling to [0, 1]."""
    with torch.no_grad():
        a = layer_output(model, image[None], layer)
    a = a.clone().requires_grad_(True)
    logits = logits_from(model, a, layer)
    target = int(logits.argmax()) if target is None else target
    (grad,) = torch.autograd.grad(logits[0, target], a)
    if method == "gradcam":
        cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
    else:
        cam = F.relu((F.relu(grad) * a).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam.detach(), size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    return (cam / cam.max() if cam.max() > 0 else cam), target


@pytest.fixture(scope="module")
def resnet18_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("r18") / "model.pt", class_names(10), arch="resnet18",
                           spec=PreprocessSpec(), seed=3)


async def explained(settings: Settings, image: bytes, queries: list[dict[str, str]]) -> list[dict]:
    async with serve(settings, {"Accept": "application/json"}) as (_, client):
        answers = []
        for params in queries:
            r = await client.post("/v1/explain", params=params, files={"file": ("x.png", image, "image/png")})
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/json"
            answers.append(r.json())
        return answers


def check_against_reference(checkpoint: Path, image: bytes, queries: list[dict[str, str]],
                            answers: list[dict]) -> None:
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.model.eval()
    tensor = load_image_tensor(image, ckpt.preprocess)
    for params, answer in zip(queries, answers, strict=True):
        target = int(params["target"]) if "target" in params else None
        layer = params.get("layer", model.feature_layers[-1])
        expected, index = reference_map(model, tensor, target, layer, params.get("method", "gradcam"))
        heatmap = torch.tensor(answer["heatmap"])
        assert answer["size"] == list(expected.shape) == [ckpt.preprocess.crop] * 2
        assert answer["target"]["index"] == index and answer["layer"] == layer
        assert float(expected.max()) == 1.0  # a real map, not an all-zero one that would match anything
        assert (heatmap - expected).abs().max() <= TOLERANCE, (params, float((heatmap - expected).abs().max()))


QUERIES_DEFAULT_MODEL = [{}, {"target": "3"}, {"layer": "layer2"}, {"layer": "layer1", "target": "0"},
                         {"layer": "conv1"}, {"method": "layercam"}, {"method": "layercam", "layer": "layer2"}]


async def test_default_model_heatmaps_equal_the_reference():
    image = (REPO / "examples" / "ankle-boot.png").read_bytes()
    settings = Settings(checkpoint=DEFAULT_MODEL, device="cpu", backend="onnxruntime", torch_threads=1,
                        log_level="warning")
    answers = await explained(settings, image, QUERIES_DEFAULT_MODEL)
    assert answers[0]["target"]["label"] == "Ankle boot"  # the top-1 class by default
    check_against_reference(DEFAULT_MODEL, image, QUERIES_DEFAULT_MODEL, answers)


QUERIES_RESNET18 = [{}, {"target": "4"}, {"layer": "layer3"}, {"layer": "conv1", "target": "1"},
                    {"method": "layercam", "target": "2"}]


async def test_resnet18_heatmaps_equal_the_reference(resnet18_checkpoint):
    image = image_bytes("PNG", size=(300, 260), seed=5)
    settings = Settings(checkpoint=resnet18_checkpoint, device="cpu", backend="torch", torch_threads=2,
                        log_level="warning")
    answers = await explained(settings, image, QUERIES_RESNET18)
    check_against_reference(resnet18_checkpoint, image, QUERIES_RESNET18, answers)
