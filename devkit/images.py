"""Images made on the fly, so that no binary file is needed: seeded noise, encoded in any Pillow format."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

CHANNELS = {"RGB": 3, "L": 1, "RGBA": 4, "CMYK": 4}


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Seeded noise in `mode` ("RGB", "L", "RGBA" or "CMYK"): every pixel counts, so scores differ between images."""
    channels = CHANNELS[mode]
    arr = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode)


def encode(img: Image.Image, fmt: str, **save_kwargs: object) -> bytes:
    """`img` as the bytes of a file in Pillow format `fmt` ("PNG", "JPEG", ...), with Pillow's save options."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save_kwargs)
    return buf.getvalue()


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (48, 40), seed: int = 0, mode: str = "RGB") -> bytes:
    """A noisy image of `size` (width, height) made here, in any Pillow format."""
    return encode(noise(*size, mode=mode, seed=seed), fmt)
