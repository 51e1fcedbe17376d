"""Tiny generated datasets for the training tests: coloured-shape ImageFolders and idx files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["blue", "green", "red"]  # sorted, as ImageFolder orders them
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}
ROOT = Path(__file__).resolve().parents[2]
# tiny resnet20 (4/8/16 channels), 32 px images, no lr scaling or warmup: a few seconds per run on one core
TINY_ARGS = ["--arch", "resnet20", "--widths", "4", "8", "16", "--image-size", "32", "--resize", "32",
             "--batch-size", "16", "--lr", "0.1", "--lr-scaling", "none", "--warmup-epochs", "0",
             "--workers", "0", "--threads", "1", "--no-progress", "--seed", "0"]


def draw_sample(colour: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A noisy background with a shape of the class colour (position, size and shape vary)."""
    arr = rng.integers(90, 166, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    d = ImageDraw.Draw(img)
    r = int(rng.integers(size // 4, size // 2))
    x0, y0 = (int(v) for v in rng.integers(0, size - r, 2))
    box = (x0, y0, x0 + r, y0 + r)
    (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=COLOURS[colour])
    return img


def make_image_folder(root: Path, *, train: int, val: int | None, seed: int = 0, size: int = 32) -> Path:
    """`root/train/<class>/*.png` (and `root/val/...` unless `val` is None), 3 colour classes."""
    rng = np.random.default_rng(seed)
    splits = {"train": train} | ({"val": val} if val is not None else {})
    for split, n in splits.items():
        for c in CLASSES:
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                draw_sample(c, rng, size).save(folder / f"{c}_{i:03d}.png")
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file as LeCun's MNIST format describes it (unsigned bytes), gzipped."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
