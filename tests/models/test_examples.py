"""examples/: one Fashion-MNIST test image per class, the dataset's exact pixels, as scripts/make_examples.py writes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import FASHION_MNIST_CLASSES, load_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
needs_dataset = pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(),
                                   reason="Debian's dataset-fashion-mnist is not installed")


def recorded() -> dict[str, tuple[str, int, int]]:
    """file -> (class, label, test-set index), from the table in examples/README.md."""
    rows = re.findall(r"^\| (\S+\.png) \| ([^|]+?) \| (\d+) \| (\d+) \|$", (EXAMPLES / "README.md").read_text(), re.M)
    return {name: (cls, int(label), int(index)) for name, cls, label, index in rows}


def make_examples_script():
    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "scripts" / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_example_per_class_named_after_it():
    table = recorded()
    assert sorted(label for _, label, _ in table.values()) == list(range(len(FASHION_MNIST_CLASSES)))
    for name, (cls, label, _) in table.items():
        assert cls == FASHION_MNIST_CLASSES[label]
        assert name == make_examples_script().example_name(cls)
    assert sorted(p.name for p in EXAMPLES.glob("*.png")) == sorted(table)
    assert {"ankle-boot.png", "t-shirt-top.png", "shirt.png"} <= set(table)
    for name in table:
        with Image.open(EXAMPLES / name) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "L", (28, 28))


@needs_dataset
def test_examples_are_the_first_test_image_of_their_class_pixel_for_pixel():
    images, labels = load_fashion_mnist(REAL_FASHION_MNIST, "test")
    for name, (_, label, index) in recorded().items():
        assert labels[index] == label and index == np.flatnonzero(labels == label)[0]
        assert np.array_equal(np.asarray(Image.open(EXAMPLES / name)), images[index])


@needs_dataset
def test_the_script_writes_the_same_bytes_again(tmp_path):
    make_examples_script().main(["--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in EXAMPLES.iterdir())
    for p in tmp_path.iterdir():
        assert p.read_bytes() == (EXAMPLES / p.name).read_bytes(), p.name
