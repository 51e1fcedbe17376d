"""Class heatmaps (Grad-CAM and LayerCAM): which part of the image a class score came from. The one implementation.

Callers: the service (`POST /v1/explain`, app/services/explain.py) and `resnet-predict --explain DIR`
(models/explain_render.py). The gradients come from Captum (`LayerGradCam`, `LayerGradientXActivation`), which
registers hooks on the layer it explains; so explanations run on `explainable_copy(model)`, a private copy, never on
a module that another thread may be running.

Definitions (one image, class score y = the class's logit, A = the layer's activations, C x h x w):
- `gradcam` (Selvaraju et al., 2017): weights w_c = spatial mean of dy/dA_c; map = ReLU(sum_c w_c A_c).
- `layercam` (Jiang et al., 2021): map = ReLU(sum_c ReLU(dy/dA_c) * A_c), per position; sharper on early layers.
  Captum gives dy/dA * A; every layer we explain ends in a ReLU (A >= 0), so ReLU(dy/dA * A) = ReLU(dy/dA) * A.
Then the map is upsampled to the crop (bilinear, align_corners=False) and min-max scaled to [0, 1]; a map that is
zero everywhere (no evidence for the class at that layer) stays zero.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam, LayerGradientXActivation
from torch import nn

Method = Literal["gradcam", "layercam"]
METHODS: tuple[str, ...] = get_args(Method)


@dataclass(frozen=True)
class Explanation:
    """A heatmap (H, W) in [0, 1] at the crop's size, the class it explains and the image's logits (K,)."""

    heatmap: torch.Tensor
    target: int
    logits: torch.Tensor
    method: str
    layer: str


def feature_layers(model: nn.Module) -> list[str]:
    """The layer names the model can explain, the same as its feature maps: `conv1`, `layer1` .. `layerN`."""
    return list(getattr(model, "feature_layers", []))


def default_layer(model: nn.Module) -> str:
    """The last residual stage: coarse, but closest to the decision (the usual choice for Grad-CAM)."""
    layers = feature_layers(model)
    if not layers:
        raise ValueError("this model has no feature layers to explain")
    return layers[-1]


def layer_module(model: nn.Module, layer: str) -> nn.Module:
    """The module whose output is `layer`: `conv1` is the stem after BN and ReLU (as in the feature maps)."""
    if layer not in feature_layers(model):
        raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(feature_layers(model))}")
    return model.relu if layer == "conv1" else getattr(model, layer)


def explainable_copy(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """A private copy of `model` for explaining: eval mode, on `device`, with the stem's ReLU made out-of-place.

    Captum hooks the copy, so the original stays untouched (another thread may run it). Parameters keep
    requires_grad off: Captum makes the explained layer's output require grad, and only the gradient from the class
    score back to that layer is computed, never the weights' gradients.
    """
    private = copy.deepcopy(model).eval()
    if device is not None:
        private = private.to(device)
    for p in private.parameters():
        p.requires_grad_(False)
    if isinstance(getattr(private, "relu", None), nn.ReLU):
        private.relu = nn.ReLU(inplace=False)  # a hooked in-place ReLU would hand Captum a tensor modified later
    return private


def _class_map(model: nn.Module, x: torch.Tensor, target: int | None, method: str,
               module: nn.Module) -> tuple[torch.Tensor, int, torch.Tensor]:
    """(map at the layer's resolution (h, w), the class explained, logits (K,)) with one forward and backward."""
    seen: dict[str, torch.Tensor] = {}

    def class_score(inputs: torch.Tensor) -> torch.Tensor:
        logits = model(inputs)
        seen["logits"] = logits.detach()
        index = logits.detach().argmax(dim=1) if target is None else torch.full_like(logits[:, 0], target).long()
        seen["target"] = index
        return logits.gather(1, index[:, None])[:, 0]

    if method == "gradcam":
        cam = LayerGradCam(class_score, module).attribute(x, relu_attributions=True)[0, 0]
    elif method == "layercam":
        grad_x_act = LayerGradientXActivation(class_score, module).attribute(x)[0]
        cam = grad_x_act.clamp_min(0).sum(dim=0)
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return cam.detach(), int(seen["target"][0]), seen["logits"][0]


def upsample_and_scale(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(h, w) map -> (H, W) in [0, 1]: bilinear upsampling, then min-max scaling (all-equal maps become zeros)."""
    up = F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    up = up - up.min()
    top = up.max()
    return up / top if top > 0 else torch.zeros_like(up)


def explain(model: nn.Module, image: torch.Tensor, target: int | None = None, method: str = "gradcam",
            layer: str | None = None) -> Explanation:
    """Heatmap of class `target` (default: the top-1 class) for one preprocessed image (C, H, W).

    `model` must be an `explainable_copy` (hooks are registered on it while this runs).
    """
    layer = layer or default_layer(model)
    module = layer_module(model, layer)
    num_classes = getattr(getattr(model, "fc", None), "out_features", None)
    if target is not None and not (0 <= target < (num_classes or target + 1)):
        raise ValueError(f"target {target} is outside 0..{(num_classes or 0) - 1}")
    device = next(model.parameters()).device
    x = image.unsqueeze(0).to(device)
    with torch.enable_grad():
        cam, index, logits = _class_map(model, x, target, method, module)
    heatmap = upsample_and_scale(cam, (image.shape[-2], image.shape[-1]))
    return Explanation(heatmap=heatmap.cpu(), target=index, logits=logits.float().cpu(), method=method, layer=layer)
