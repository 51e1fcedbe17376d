"""Feature maps: one layer's activations for one image, drawn as a PNG grid."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from torch import nn

_MIN_TILE = 64  # small maps (CIFAR-sized layers are 8x8) are scaled up to stay visible
_PAD = 2


def render_grid(maps: torch.Tensor) -> bytes:
    """(C, H, W) activations -> PNG grid, each channel min-max scaled to 0..255 on its own."""
    maps = maps.detach().float().cpu()
    lo = maps.amin(dim=(1, 2), keepdim=True)
    hi = maps.amax(dim=(1, 2), keepdim=True)
    tiles = ((maps - lo) / (hi - lo).clamp_min(1e-8) * 255).round().to(torch.uint8).numpy()
    n, h, w = tiles.shape
    scale = max(1, math.ceil(_MIN_TILE / max(h, w)))
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = h * scale, w * scale
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (th + _PAD) + _PAD, cols * (tw + _PAD) + _PAD), 128, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = _PAD + r * (th + _PAD), _PAD + c * (tw + _PAD)
        grid[top:top + th, left:left + tw] = tiles[i]
    buf = io.BytesIO()
    Image.fromarray(grid, "L").save(buf, format="PNG")
    return buf.getvalue()


def feature_map_png(model: nn.Module, image: torch.Tensor, layer: str, channels: int) -> tuple[bytes, tuple[int, ...]]:
    """One preprocessed image (C, H, W) -> (PNG of the first `channels` maps of `layer`, the layer's output shape)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.forward_features(image.unsqueeze(0).to(device), upto=layer)[0]
    return render_grid(out[:channels]), tuple(out.shape)
