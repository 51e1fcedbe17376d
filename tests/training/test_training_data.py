"""Datasets: ImageFolder checks before training, corrupt files, the seeded split, Fashion-MNIST idx files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.tinydata import CLASSES, TINY_ARGS
from training.data import (
    FASHION_MNIST_CLASSES,
    DataError,
    build_data,
    fashion_mnist_spec,
    fashion_mnist_split,
    load_fashion_mnist,
    read_idx,
    scan_image_folder,
)
from training.train import main as train_main

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def build(root: Path, **kw):
    return build_data(str(root), fashion_dir="", image_size=32, resize=32, val_fraction=kw.pop("val_fraction", 0.25),
                      seed=kw.pop("seed", 0), **kw)


def paths(dataset) -> set[Path]:
    return {s.path for s in dataset.samples}


def test_class_order_is_sorted_folder_names(image_folder):
    data = build(image_folder())
    assert data.classes == sorted(CLASSES)
    assert len(data.train) == 8 * 3 and len(data.val) == 4 * 3
    assert data.spec.crop == 32


def train_refuses(root: Path, tmp_path: Path, capsys, *needles: str, extra: tuple[str, ...] = ()) -> None:
    """`resnet-train` stops with a message naming the problem, before writing anything."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        train_main(["--data", str(root), "--out", str(out), "--epochs", "1", *TINY_ARGS, *extra])
    assert exc.value.code == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]  # one line
    assert message.startswith("resnet-train: error:")
    for needle in needles:
        assert needle in message
    assert not (out / "last.pt").exists() and not (out / "metrics.jsonl").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line_and_exit_1(image_folder, tmp_path, capsys):
    train_refuses(image_folder(), tmp_path, capsys, "--device cuda: CUDA is not available", extra=("--device", "cuda"))


def test_class_missing_from_val_is_a_clear_error(image_folder, tmp_path, capsys):
    root = image_folder()
    shutil.rmtree(root / "val" / "green")
    with pytest.raises(DataError, match=r"missing.*green"):
        build(root)
    train_refuses(root, tmp_path, capsys, "green", "missing")


def test_empty_class_folder_is_a_clear_error(image_folder, tmp_path, capsys):
    root = image_folder()
    for f in (root / "train" / "red").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="no images"):
        build(root)
    train_refuses(root, tmp_path, capsys, str(root / "train" / "red"), "no images")


def test_val_class_unknown_to_train_is_an_error(image_folder):
    root = image_folder()
    shutil.copytree(root / "val" / "red", root / "val" / "purple")
    with pytest.raises(DataError, match="purple"):
        build(root)


def test_a_folder_that_is_no_class_of_a_large_model_names_only_a_few_classes(tmp_path):
    """resnet-export calibrating an ImageNet model on the wrong folder: one short line, not 1,000 class names."""
    (tmp_path / "train" / "not_a_class").mkdir(parents=True)
    imagenet = [f"n{i:08d}" for i in range(1000)]
    with pytest.raises(DataError) as exc:
        scan_image_folder(tmp_path / "train", imagenet, subset=True)
    message = str(exc.value)
    assert "not_a_class" in message and "n00000009, ... and 990 more" in message
    assert "n00000010" not in message and len(message) < 400


def test_corrupt_images_are_reported_and_skipped(image_folder, caplog):
    root = image_folder()
    garbage = root / "train" / "red" / "garbage.png"
    garbage.write_bytes(b"this is not an image at all")
    good = (root / "train" / "blue" / "blue_000.png").read_bytes()
    truncated = root / "train" / "blue" / "truncated.png"
    truncated.write_bytes(good[: len(good) // 3])
    empty = root / "val" / "green" / "empty.jpg"
    empty.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="training.data"):
        data = build(root)
    assert len(data.train) == 8 * 3 and len(data.val) == 4 * 3  # the three bad files are left out
    for bad in (garbage, truncated, empty):
        assert bad not in paths(data.train) | paths(data.val)
        (record,) = [r for r in caplog.records if str(bad) in r.getMessage()]
        assert "skipping unreadable image" in record.getMessage()
        assert len(record.getMessage()) > len(f"skipping unreadable image {bad}: ")  # a reason follows the path


def test_class_with_only_corrupt_images_is_an_error(image_folder):
    root = image_folder()
    for f in (root / "val" / "blue").iterdir():
        f.write_bytes(b"broken")
    with pytest.raises(DataError, match="blue"):
        build(root)


def test_without_val_a_seeded_stratified_split(image_folder):
    root = image_folder(train=8, val=None)
    a, b, c = build(root, seed=1), build(root, seed=1), build(root, seed=2)
    assert paths(a.val) == paths(b.val) and paths(a.train) == paths(b.train)  # seeded: reproducible
    assert paths(a.val) != paths(c.val)
    all_files = {p for p in (root / "train").rglob("*.png")}
    assert paths(a.train) | paths(a.val) == all_files and not paths(a.train) & paths(a.val)
    for label in range(3):  # stratified: 25% of each class
        assert sum(s.label == label for s in a.val.samples) == 2
        assert sum(s.label == label for s in a.train.samples) == 6


def test_read_idx_matches_what_was_written(tiny_fashion_dir):
    images = read_idx(tiny_fashion_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(tiny_fashion_dir / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [i % 10 for i in range(30)]


def test_fashion_mnist_validates_on_held_out_training_images_and_keeps_the_test_split_apart(tiny_fashion_dir):
    data = build_data(str(tiny_fashion_dir), fashion_dir="", image_size=0, resize=0, val_fraction=0.1, seed=0)
    assert data.classes == FASHION_MNIST_CLASSES
    # 60 training images (6 per class): one per class is held out for validation; the 30 test images stay apart
    assert (len(data.train), len(data.val), len(data.test)) == (50, 10, 30)
    assert sorted(int(data.val[i][1]) for i in range(10)) == list(range(10))  # stratified
    train_images = read_idx(tiny_fashion_dir / "train-images-idx3-ubyte.gz")
    test_images = read_idx(tiny_fashion_dir / "t10k-images-idx3-ubyte.gz")
    held = {bytes(x.numpy().tobytes()) for x in data.train.images}
    assert len(held) == 50 and held <= {im.tobytes() for im in train_images}
    assert not held & {im.tobytes() for im in test_images}
    x, _ = data.train[3]
    assert tuple(x.shape) == (1, 28, 28)
    assert data.spec.color_mode == "L" and data.spec.crop == 28
    assert data.val_source.startswith("train (stratified 0.1") and data.test_name == "fashion-mnist test split"
    other = build_data(str(tiny_fashion_dir), fashion_dir="", image_size=0, resize=0, val_fraction=0.1, seed=1)
    assert not torch.equal(other.val.y, data.val.y) or not torch.equal(other.val.x, data.val.x)  # seeded


def test_the_fashion_mnist_splits_are_one_function_that_training_and_evaluation_share(tiny_fashion_dir):
    data = build_data(str(tiny_fashion_dir), fashion_dir="", image_size=0, resize=0, val_fraction=0.1, seed=0)
    spec = fashion_mnist_spec()
    val = fashion_mnist_split(tiny_fashion_dir, "val", spec, holdout=0.1, seed=0)
    train = fashion_mnist_split(tiny_fashion_dir, "train", holdout=0.1, seed=0)
    test = fashion_mnist_split(tiny_fashion_dir, "test", spec)
    assert torch.equal(val.dataset.x, data.val.x) and torch.equal(val.dataset.y, data.val.y)
    assert sorted([*train.indices, *val.indices]) == list(range(60))  # a partition of the training file
    assert list(test.indices) == list(range(30)) and len(test.dataset) == 30
    assert val.name == "fashion-mnist validation split (0.1 of train, seed 0)"
    assert (train.name, test.name) == ("fashion-mnist train split", "fashion-mnist test split")
    as_calibration = fashion_mnist_split(tiny_fashion_dir, "train", spec, holdout=0.1, seed=0)
    assert len(as_calibration.dataset) == 50 and as_calibration.dataset[0][0].dtype == torch.float32


def test_image_folder_with_a_test_split_keeps_it_for_the_end(image_folder):
    root = image_folder()
    shutil.copytree(root / "val", root / "test")
    data = build(root)
    assert data.val_source == "val" and data.test is not None and len(data.test) == len(data.val)
    assert data.test_name == str(root / "test")


@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_idx_files():
    images, labels = load_fashion_mnist(REAL_FASHION_MNIST, "test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10  # the official test split is balanced
    assert 0 < images.mean() < 255


def test_missing_fashion_mnist_files_are_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path, "train")
