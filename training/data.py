"""Datasets: Fashion-MNIST from its idx .gz files, and ImageFolder trees (`train/`, `val/`, optional `test/`).

Validation always comes from data the model does not train on and the test split is never it: Fashion-MNIST
validates on a seeded, stratified part of its training set and keeps the official test set for one final evaluation.
"""

from __future__ import annotations

import gzip
import logging
import random
import struct
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from models.cli import cut_list
from models.errors import ImageError, ResNetServiceError
from models.preprocess import (
    IMAGE_EXTENSIONS,
    PreprocessSpec,
    convert_mode,
    decode_image,
    load_image_tensor,
    pil_to_uint8_tensor,
    preprocess_image,
    resize_center_crop,
)

log = logging.getLogger(__name__)

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


class DataError(ResNetServiceError, ValueError):
    """The dataset on disk cannot be trained on (missing split, empty class, ...)."""


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (gzip or plain), as LeCun's MNIST format describes it."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path}: not an unsigned-byte idx file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The official split: 'train' (60k) or 'test' (10k); images uint8 (N, 28, 28), labels (N,)."""
    root, prefix = Path(root), "train" if split == "train" else "t10k"
    paths = [root / f"{prefix}-{kind}-idx{n}-ubyte.gz" for kind, n in (("images", 3), ("labels", 1))]
    for p in paths:
        if not p.exists() and not p.with_suffix("").exists():
            raise DataError(f"{p} not found: install Debian's dataset-fashion-mnist or pass --fashion-mnist-dir")
    images, labels = (read_idx(p if p.exists() else p.with_suffix("")) for p in paths)
    if len(images) != len(labels):
        raise DataError(f"{root}: {len(images)} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


class ArrayDataset(Dataset):
    """In-memory uint8 images (N, H, W) or (N, H, W, C) with labels; yields (uint8 tensor CxHxW, label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None) -> None:
        images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        self.images = torch.from_numpy(np.array(images, copy=True, order="C"))  # idx arrays are read-only views
        self.labels = torch.from_numpy(labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        return (self.transform(x) if self.transform else x), int(self.labels[i])

    @property
    def batchable(self) -> bool:
        """True when a whole batch can be sliced at once (no per-sample transform): see `get_batch`."""
        return self.transform is None

    def get_batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch by fancy indexing (no per-sample Python work); the batch augmentations run in the loop."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx], self.labels[idx]


@dataclass
class Sample:
    path: Path
    label: int


def scan_image_folder(root: Path, classes: list[str] | None = None, *,
                      subset: bool = False) -> tuple[list[Sample], list[str]]:
    """List `root/<class>/*` images, labelled by position in `classes` (default: the sorted folder names).

    With `classes`, a folder that is not one of them is an error, and so is a class without a folder unless
    `subset` (`resnet-eval` on some of a checkpoint's classes). The one scanner of ImageFolder trees: training's
    `train/`, `val/`, `test/` and `resnet-eval`'s folder.
    """
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DataError(f"{root}: no class folders")
    if classes is None:
        classes = found
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise DataError(f"{root}: folder(s) {cut_list(unknown)} are not among the {len(classes)} classes "
                        f"({cut_list(classes)})")
    missing = [c for c in classes if c not in found]
    if missing and not subset:
        raise DataError(f"{root}: class folder(s) missing: {missing}")
    samples: list[Sample] = []
    for name in (c for c in classes if c in found):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files and not subset:
            raise DataError(f"{root / name}: class folder has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        samples += [Sample(p, classes.index(name)) for p in files]
    if not samples:
        raise DataError(f"{root}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return samples, classes


def drop_unreadable(samples: list[Sample], classes: list[str] | None = None) -> list[Sample]:
    """Check every file's header; report (path and reason) and skip the ones Pillow cannot read.

    With `classes`, a class left with no readable image is an error (before any training starts).
    """
    good = []
    for s in samples:
        try:
            with Image.open(s.path) as img:
                img.verify()
            good.append(s)
        except Exception as e:  # any unreadable file is skipped, never fatal
            log.warning("skipping unreadable image %s: %s: %s", s.path, type(e).__name__, e)
    if classes is not None:
        left = {s.label for s in good}
        empty = [c for i, c in enumerate(classes) if i not in left]
        if empty:
            folder = samples[0].path.parent.parent if samples else "?"
            raise DataError(f"{folder}: class folder(s) {empty} have no readable image")
    return good


def stratified_indices(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded per-class split of positions: `fraction` of each class (at least one) goes to validation."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_class):
        items = by_class[label][:]
        rng.shuffle(items)
        if len(items) < 2:
            raise DataError(f"class {label} has {len(items)} image(s); a split needs at least 2")
        k = min(len(items) - 1, max(1, round(len(items) * fraction)))
        val += items[:k]
        train += items[k:]
    return train, val


def stratified_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Seeded per-class split of samples: `fraction` of each class (at least one image) goes to validation."""
    train, val = stratified_indices([s.label for s in samples], fraction, seed)
    return [samples[i] for i in train], [samples[i] for i in val]


class ImageFolderDataset(Dataset):
    """Files on disk; the train side returns uint8 tensors for per-sample transforms, val the shared preprocessing."""

    def __init__(self, samples: list[Sample], spec: PreprocessSpec, *, train: bool, transform=None) -> None:
        self.samples, self.spec, self.train, self.transform = samples, spec, train, transform

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> torch.Tensor:
        s = self.samples[i]
        if not self.train:  # exactly what the service does with the same file
            return load_image_tensor(s.path.read_bytes(), self.spec)
        img = convert_mode(decode_image(s.path.read_bytes(), draft_size=self.spec.resize), self.spec.color_mode)
        if self.transform is None or getattr(self.transform, "needs_center_crop", False):
            img = resize_center_crop(img, self.spec.resize, self.spec.crop, self.spec.interpolation)
        return pil_to_uint8_tensor(img)

    def __getitem__(self, i: int):
        try:
            x = self.load(i)
        except (ImageError, OSError) as e:
            log.warning("skipping unreadable image %s: %s", self.samples[i].path, e)
            return None
        if self.train and self.transform is not None:
            x = self.transform(x)
        return x, self.samples[i].label


class WholeBatches(Dataset):
    """A `batchable` dataset indexed by a list of positions: with `DataLoader(batch_size=None, sampler=BatchSampler)`
    each batch is one fancy-indexing call instead of `batch_size` `__getitem__` calls and a collate."""

    def __init__(self, dataset: ArrayDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.get_batch(indices)


def collate_skip_none(batch):
    """Default collation, minus the samples that failed to load."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.utils.data.default_collate(batch)


@dataclass
class DataBundle:
    train: Dataset
    val: Dataset  # held out from training; chooses best.pt and nothing is tuned on anything else
    classes: list[str]
    spec: PreprocessSpec
    name: str
    val_is_preprocessed: bool  # val items are float tensors already through the shared preprocessing
    test: Dataset | None = None  # evaluated once, after the last epoch
    test_name: str = ""  # what `test` is, e.g. "fashion-mnist test split"
    val_source: str = "val"  # where validation came from: "val/", or a held-out fraction of train


def fashion_mnist_spec(size: int = 28, resize: int = 0) -> PreprocessSpec:
    return PreprocessSpec(resize=resize or size, crop=size, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD,
                          interpolation="bilinear", color_mode="L", extra={"dataset": "fashion-mnist"})


def image_folder_spec(size: int, resize: int) -> PreprocessSpec:
    return PreprocessSpec(resize=resize, crop=size)


class PreprocessedArrayDataset(Dataset):
    """Validation arrays run once through the shared `preprocess_image`, exactly as the service would."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, spec: PreprocessSpec) -> None:
        mode = "L" if images.ndim == 3 else "RGB"
        self.x = torch.stack([preprocess_image(Image.fromarray(im, mode), spec) for im in images])
        self.y = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


def is_fashion_mnist(data: str) -> bool:
    p = Path(data)
    return data == "fashion-mnist" or (p.is_dir() and any(p.glob("train-images-idx3-ubyte*")))


def build_data(data: str, *, fashion_dir: str, image_size: int, resize: int, val_fraction: float, seed: int,
               train_transform=None) -> DataBundle:
    """Resolve `data` to train/val datasets, the class list and the evaluation preprocessing."""
    if is_fashion_mnist(data):
        return fashion_mnist_bundle(fashion_dir if data == "fashion-mnist" else data, image_size, resize,
                                    val_fraction, seed, train_transform)
    root = Path(data)
    size = image_size or 224
    spec = image_folder_spec(size, resize or round(size * 8 / 7))
    if not (root / "train").is_dir():
        raise DataError(f"{root}: expected {root / 'train'} (and optionally {root / 'val'}) with one folder per class")
    train_samples, classes = scan_image_folder(root / "train")
    train_samples = drop_unreadable(train_samples, classes)
    if (root / "val").is_dir():
        val_samples, source = split_samples(root / "val", classes), "val"
    else:
        train_samples, val_samples = stratified_split(train_samples, val_fraction, seed)
        source = f"train (stratified {val_fraction:g}, seed {seed})"
    test = None
    if (root / "test").is_dir():
        test = ImageFolderDataset(split_samples(root / "test", classes), spec, train=False)
    return DataBundle(ImageFolderDataset(train_samples, spec, train=True, transform=train_transform),
                      ImageFolderDataset(val_samples, spec, train=False), classes, spec, str(root), True,
                      test=test, test_name=str(root / "test") if test is not None else "", val_source=source)


class FashionMnistSplit(NamedTuple):
    dataset: Dataset
    name: str  # e.g. "fashion-mnist validation split (0.1 of train, seed 0)"
    indices: np.ndarray  # each item's position in its official file (train or t10k)


def fashion_mnist_split(root: str | Path, split: Literal["train", "val", "test"], spec: PreprocessSpec | None = None,
                        *, holdout: float = 0.1, seed: int = 0, transform: Any = None) -> FashionMnistSplit:
    """One Fashion-MNIST split: `train` (the official training set less the held-out part), `val` (the
    stratified, seeded `holdout` fraction of it, as `resnet-train` validates on) or `test` (the official test set).

    With `spec` the items are run once through the shared preprocessing (evaluation, calibration); without it
    they are uint8 arrays through `transform` (training).
    """
    images, labels = load_fashion_mnist(root, "test" if split == "test" else "train")
    indices = np.arange(len(labels))
    name = "fashion-mnist test split"
    if split != "test":
        train, val = stratified_indices(labels.tolist(), holdout, seed)
        indices = np.asarray(train if split == "train" else val, dtype=np.int64)
        name = "fashion-mnist train split" if split == "train" else \
            f"fashion-mnist validation split ({holdout:g} of train, seed {seed})"
    x, y = images[indices], labels[indices]
    dataset = PreprocessedArrayDataset(x, y, spec) if spec is not None else ArrayDataset(x, y, transform)
    return FashionMnistSplit(dataset, name, indices)


def fashion_mnist_bundle(root: str | Path, image_size: int, resize: int, val_fraction: float, seed: int,
                         train_transform: Any = None) -> DataBundle:
    """Train on Fashion-MNIST's training set less a held-out part that validates; its test set is tested once."""
    spec = fashion_mnist_spec(image_size or 28, resize)
    split = {"holdout": val_fraction, "seed": seed}
    train = fashion_mnist_split(root, "train", transform=train_transform, **split)
    test = fashion_mnist_split(root, "test", spec)
    if spec.crop != 28 or spec.resize != 28:
        raise DataError("Fashion-MNIST trains at its native 28x28 (--image-size 28)")
    return DataBundle(train.dataset, fashion_mnist_split(root, "val", spec, **split).dataset,
                      list(FASHION_MNIST_CLASSES), spec, "fashion-mnist", True, test=test.dataset,
                      test_name=test.name, val_source=f"train (stratified {val_fraction:g}, seed {seed})")


def split_samples(folder: Path, classes: list[str]) -> list[Sample]:
    """The readable images of a held-out split (`val/`, `test/`), every class of `train/` present."""
    samples, _ = scan_image_folder(folder, classes)
    return drop_unreadable(samples, classes)
