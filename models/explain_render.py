"""Heatmaps drawn for people: blended over the crop the model saw, with a colour scale; and a folder of them.

`overlay_png` serves `POST /v1/explain` (image/png) and `write_explanations` serves `resnet-predict --explain DIR`.
"""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn
from tqdm import tqdm

from models.atomic import atomic_write_bytes
from models.errors import CheckpointError, ImageError
from models.preprocess import PreprocessSpec, load_image_tensor

COLORMAP = "jet"  # blue = no evidence, red = the most; the Grad-CAM paper's scale, recognised by readers
ALPHA = 0.5  # how much of the heatmap shows over the image
MIN_SIDE = 224  # small crops (28 px Fashion-MNIST) are enlarged to be seen
_BAR_W, _GAP, _LABEL_W = 14, 8, 34


@functools.lru_cache(maxsize=4)
def colour_lut(name: str = COLORMAP) -> np.ndarray:
    """(256, 3) uint8 colours of a matplotlib colormap (no pyplot, no display)."""
    import matplotlib

    return (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def crop_rgb(image: torch.Tensor, spec: PreprocessSpec) -> np.ndarray:
    """The preprocessed crop (C, H, W) back in its original colours: (H, W, 3) uint8 (grayscale repeated)."""
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    pixels = (image.detach().float().cpu() * std + mean).clamp(0, 1)
    rgb = (pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb


def _legend(height: int, lut: np.ndarray) -> Image.Image:
    """A vertical colour bar, 1 at the top and 0 at the bottom, labelled."""
    legend = Image.new("RGB", (_GAP + _BAR_W + _LABEL_W, height), "white")
    ramp = lut[np.linspace(255, 0, height).round().astype(int)]
    bar = np.repeat(ramp[:, None, :], _BAR_W, axis=1)
    legend.paste(Image.fromarray(bar, "RGB"), (_GAP, 0))
    draw, font = ImageDraw.Draw(legend), ImageFont.load_default()
    x = _GAP + _BAR_W + 3
    draw.text((x, 0), "1.0", fill="black", font=font)
    draw.text((x, height // 2 - 5), "0.5", fill="black", font=font)
    draw.text((x, height - 12), "0.0", fill="black", font=font)
    return legend


def overlay_image(image: torch.Tensor, heatmap: torch.Tensor, spec: PreprocessSpec) -> Image.Image:
    """The heatmap (H, W) in [0, 1] blended over the de-normalised crop, enlarged to >= MIN_SIDE, with its scale."""
    lut = colour_lut()
    levels = (heatmap.detach().float().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    blended = (1 - ALPHA) * crop_rgb(image, spec) + ALPHA * lut[levels]
    picture = Image.fromarray(blended.round().astype(np.uint8), "RGB")
    scale = max(1, -(-MIN_SIDE // max(picture.size)))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    legend = _legend(picture.height, lut)
    out = Image.new("RGB", (picture.width + legend.width, picture.height), "white")
    out.paste(picture, (0, 0))
    out.paste(legend, (picture.width, 0))
    return out


def overlay_png(image: torch.Tensor, heatmap: torch.Tensor, spec: PreprocessSpec) -> bytes:
    """`overlay_image` encoded as PNG."""
    buf = io.BytesIO()
    overlay_image(image, heatmap, spec).save(buf, format="PNG")
    return buf.getvalue()


def output_names(files: Iterable[str]) -> list[str]:
    """One PNG name per input file: its stem, with `-2`, `-3`... when two inputs share a stem."""
    names, used = [], set()
    for f in files:
        stem, n = Path(f).stem, 1
        name = f"{stem}.png"
        while name in used:
            n += 1
            name = f"{stem}-{n}.png"
        used.add(name)
        names.append(name)
    return names


def write_explanations(model: nn.Module, spec: PreprocessSpec, files: list[str], out_dir: Path, *,
                       method: str = "gradcam", layer: str | None = None, progress: bool | None = False) -> int:
    """One overlay PNG per image file (top-1 class) into `out_dir`; the number written. Unreadable files are skipped
    with a line on stderr. `progress`: a tqdm bar on stderr (None = only when stderr is a terminal)."""
    from models.explain import explain, explainable_copy  # Captum loads here: plain predictions do not wait for it

    if not getattr(model, "feature_layers", None):
        raise CheckpointError("explanations need a torch checkpoint (an ONNX file has no gradients to follow)")
    private = explainable_copy(model, next(model.parameters()).device)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for path, name in tqdm(list(zip(files, output_names(files), strict=True)), unit="img", file=sys.stderr,
                           dynamic_ncols=True, disable=None if progress is None else not progress):
        try:
            image = load_image_tensor(Path(path).read_bytes(), spec)
        except (ImageError, OSError) as e:
            tqdm.write(f"explain: {path}: cannot read image: {e}", file=sys.stderr)
            continue
        result = explain(private, image, None, method, layer)
        atomic_write_bytes(out_dir / name, overlay_png(image, result.heatmap, spec))
        written += 1
    return written
