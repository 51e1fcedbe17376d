"""Preprocessing, defined once: decode -> EXIF orientation -> colour mode -> resize -> center crop -> normalize.

Training's validation transform, `resnet-eval`, `resnet-predict` and the service all call these
functions with the checkpoint's `preprocess` dict, so they see the same tensor for the same file.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from models.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageTypeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                  "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
COLOR_MODES = ("RGB", "L")
# The image formats we decode, with their file extensions: the one list that upload checks, API texts, folder scans
# and error messages derive from.
IMAGE_FORMATS = {"JPEG": (".jpg", ".jpeg"), "PNG": (".png",), "WebP": (".webp",), "GIF": (".gif",),
                 "BMP": (".bmp",), "TIFF": (".tif", ".tiff")}
IMAGE_EXTENSIONS = frozenset(ext for exts in IMAGE_FORMATS.values() for ext in exts)
IMAGE_FORMAT_NAMES = ", ".join(list(IMAGE_FORMATS)[:-1]) + " or " + list(IMAGE_FORMATS)[-1]
DEFAULT_MAX_PIXELS = 40_000_000
# Formats we recognise but refuse on purpose (415), told apart by their first bytes.
_REFUSED_SIGNATURES = {b"%PDF": "PDF", b"<svg": "SVG", b"<?xml": "XML/SVG", b"PK\x03\x04": "ZIP"}


@dataclass(frozen=True)
class PreprocessSpec:
    """What evaluation feeds the model; stored in every checkpoint under `preprocess`."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    color_mode: str = "RGB"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {COLOR_MODES}, got {self.color_mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}")
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"need 0 < crop <= resize, got crop={self.crop} resize={self.resize}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean/std need {self.channels} values for color_mode {self.color_mode}")

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "L" else 3

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessSpec:
        known = {"resize", "crop", "mean", "std", "interpolation", "color_mode"}
        missing = known - set(d)
        if missing:
            raise ValueError(f"preprocess is missing {sorted(missing)}")
        return cls(resize=int(d["resize"]), crop=int(d["crop"]), mean=tuple(float(v) for v in d["mean"]),
                   std=tuple(float(v) for v in d["std"]), interpolation=str(d["interpolation"]),
                   color_mode=str(d["color_mode"]), extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return {**d, **extra}


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None) -> Image.Image:
    """Open `data` as a still image with EXIF orientation applied; header checked against `max_pixels` first.

    `draft_size` lets JPEGs decode at 1/2, 1/4 or 1/8 scale while both sides stay >= it.
    """
    if not data:
        raise ImageDecodeError("the file is empty")
    head = data[:256].lstrip().lower()
    for sig, name in _REFUSED_SIGNATURES.items():
        if head.startswith(sig.lower()) or (name == "XML/SVG" and b"<svg" in head):
            raise UnsupportedImageTypeError(f"{name} files are not supported; send a {IMAGE_FORMAT_NAMES}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageTooLargeError(f"image is {w}x{h} = {w * h} pixels; the limit is {max_pixels}")
            if w < 1 or h < 1:
                raise ImageDecodeError(f"image has no pixels ({w}x{h})")
            if draft_size and img.format == "JPEG":
                img.draft(img.mode if img.mode in ("RGB", "L") else None, (draft_size, draft_size))
            img.load()  # the first frame of animated or multi-page files
            return ImageOps.exif_transpose(img)
    except ImageTooLargeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(f"image exceeds the pixel limit ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as e:
        raise ImageDecodeError(f"the image could not be decoded ({type(e).__name__}: {e})") from None


def convert_mode(img: Image.Image, color_mode: str) -> Image.Image:
    """Convert any Pillow mode (CMYK, P, 1, I;16, LA, RGBA, ...) to 'RGB' or 'L'; alpha is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # high bit depth: scale, don't clip
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8), "L")
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img if img.mode == color_mode else img.convert(color_mode)


def resize_center_crop(img: Image.Image, resize: int, crop: int, interpolation: str = "bilinear") -> Image.Image:
    """Resize the shorter side to `resize`, then take the central `crop` x `crop` square, pixel for pixel as
    torchvision's `Resize(resize, interpolation)` + `CenterCrop(crop)` on a PIL image.

    The one definition: `preprocess_image` (so `load_image_tensor`, the service, `resnet-eval`, `resnet-predict` and
    validation) and `training.data`'s train-side loader call it.
    """
    w, h = img.size
    short, long = min(w, h), max(w, h)
    if short != resize:
        new_long = int(resize * long / short)  # truncated, in torchvision's order of float operations
        size = (resize, new_long) if w <= h else (new_long, resize)
        img = img.resize(size, INTERPOLATIONS[interpolation], reducing_gap=None)
    w, h = img.size
    # A side shorter than the crop is padded with zeros, the odd pixel on the right/bottom (torchvision's
    # CenterCrop); Pillow fills the part of the box outside the image with zeros.
    left = -((crop - w) // 2) if w < crop else round((w - crop) / 2.0)
    top = -((crop - h) // 2) if h < crop else round((h - crop) / 2.0)
    return img.crop((left, top, left + crop, top + crop))


def normalize(batch: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 tensor (..., C, H, W) in [0, 255] -> float tensor normalized with the spec's mean and std."""
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=batch.device).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=batch.device).view(-1, 1, 1)
    return (batch.to(torch.float32) / 255.0 - mean) / std  # never in place: the caller's tensor stays as it was


def pil_to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """Pillow image in 'RGB' or 'L' -> uint8 tensor (C, H, W)."""
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def preprocess_image(img: Image.Image, spec: PreprocessSpec) -> torch.Tensor:
    """A decoded image -> the model's normalized input tensor (C, crop, crop)."""
    img = resize_center_crop(convert_mode(img, spec.color_mode), spec.resize, spec.crop, spec.interpolation)
    return normalize(pil_to_uint8_tensor(img), spec)


def load_image_tensor(data: bytes, spec: PreprocessSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Encoded image bytes -> model input: the whole path the service and `resnet-eval` share."""
    return preprocess_image(decode_image(data, max_pixels=max_pixels, draft_size=spec.resize), spec)
