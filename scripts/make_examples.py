"""One example image per class for trying the service: the first Fashion-MNIST test image of each class.

    python scripts/make_examples.py                # writes examples/<class>.png and examples/README.md
    python scripts/make_examples.py --fashion-mnist-dir DIR --out DIR

Each PNG is the 28x28 grayscale idx image, pixel for pixel; the same dataset gives the same files on every run.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.atomic import atomic_write_bytes
from training.data import FASHION_MNIST_CLASSES, load_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

README = """\
# Example images

One image per Fashion-MNIST class, for trying the service:

```bash
curl -F file=@examples/ankle-boot.png http://localhost:8000/v1/predict
```

Each file is the first image of its class in the official Fashion-MNIST **test set** (`t10k-images-idx3-ubyte.gz`,
as Debian's `dataset-fashion-mnist` installs it under `/usr/share/datasets/fashion-mnist`), saved as a 28x28 grayscale
PNG with exactly the dataset's pixels; the index below is 0-based into that file. The bundled model
(`weights/model.pt`) never trained on the test set, so it has not seen these images.
`python scripts/make_examples.py` writes them (and this file) again, byte for byte;
`tests/models/test_examples.py` checks them against the dataset.

| file | class | label | test-set index |
|---|---|---|---|
{rows}

## License

The images come from Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist), MIT licensed:

Copyright (c) 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
documentation files (the "Software"), to deal in the Software without restriction, including without limitation the
rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to permit
persons to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial portions of the
Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE
WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def example_name(label: str) -> str:
    """'T-shirt/top' -> 't-shirt-top.png', 'Ankle boot' -> 'ankle-boot.png'."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") + ".png"


def first_of_each_class(labels: np.ndarray, n_classes: int) -> list[int]:
    """The index of the first image of each class, in class order."""
    found = [np.flatnonzero(labels == c) for c in range(n_classes)]
    missing = [FASHION_MNIST_CLASSES[c] for c, f in enumerate(found) if not len(f)]
    if missing:
        raise SystemExit(f"no test image of class {missing}")
    return [int(f[0]) for f in found]


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, "PNG")  # Pillow writes no timestamp: same pixels, same bytes
    return buf.getvalue()


def make_examples(fashion_mnist_dir: Path, out: Path) -> list[Path]:
    """Write one PNG per class and the README listing them into `out`; returns the paths written."""
    images, labels = load_fashion_mnist(fashion_mnist_dir, "test")
    written, rows = [], []
    for label, i in enumerate(first_of_each_class(labels, len(FASHION_MNIST_CLASSES))):
        name = example_name(FASHION_MNIST_CLASSES[label])
        written.append(atomic_write_bytes(out / name, png_bytes(images[i])))
        rows.append(f"| {name} | {FASHION_MNIST_CLASSES[label]} | {label} | {i} |")
    written.append(atomic_write_bytes(out / "README.md", README.format(rows="\n".join(rows)).encode()))
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fashion-mnist-dir", type=Path, default=DEBIAN_FASHION_MNIST,
                   help=f"folder with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
                        f"(default: {DEBIAN_FASHION_MNIST})")
    p.add_argument("--out", type=Path, default=ROOT / "examples",
                   help="folder to write the PNGs and README.md into (default: examples/ of this repository)")
    args = p.parse_args(argv)
    for path in make_examples(args.fashion_mnist_dir, args.out):
        print(path)


if __name__ == "__main__":
    main()
