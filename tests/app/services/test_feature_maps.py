"""Feature maps: the grid has one tile per channel (the activations: tests/models/test_forward_features.py)."""

from __future__ import annotations

import io

import torch
from PIL import Image

from app.services.feature_maps import render_grid


def test_grid_layout_and_scaling():
    maps = torch.stack([torch.full((8, 8), float(i)) for i in range(5)])
    maps[0, 0, 0] = 10.0  # channel 0 has contrast, the others are flat
    img = Image.open(io.BytesIO(render_grid(maps)))
    tile, pad = 64, 2  # 8x8 maps are scaled up to 64 px
    assert img.size == (3 * (tile + pad) + pad, 2 * (tile + pad) + pad)  # 5 tiles -> 3 columns, 2 rows
    assert img.getpixel((pad, pad)) == 255  # the max of channel 0
    assert img.getpixel((pad + 10, pad + 10)) == 0
