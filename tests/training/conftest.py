"""Fixtures for the training worker tests: tiny generated datasets and one short training run shared by many tests."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
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


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "data", **kwargs) -> Path:
        kwargs.setdefault("train", 8)
        kwargs.setdefault("val", 4)
        return make_image_folder(tmp_path / name, **kwargs)

    return make


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> dict:
    """One 2-epoch run on a generated 3-class ImageFolder (40 train / 10 val images per class)."""
    from training.config import parse_config
    from training.train import run

    tmp = tmp_path_factory.mktemp("trained")
    data = make_image_folder(tmp / "data", train=40, val=10)
    out = tmp / "run"
    metrics = run(parse_config(["--data", str(data), "--out", str(out), "--epochs", "2", *TINY_ARGS]))
    return {"data": data, "out": out, "metrics": metrics}


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file as LeCun's MNIST format describes it (unsigned bytes), gzipped."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def tiny_fashion_dir(tmp_path_factory) -> Path:
    """A folder of Fashion-MNIST-format idx files: 60 train and 30 test images of 28x28, labels 0..9."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 30)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root
