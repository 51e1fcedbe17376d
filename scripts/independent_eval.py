"""Evaluate a checkpoint on the official Fashion-MNIST test set without the project's data or preprocessing code.

    python scripts/independent_eval.py weights/model.pt [/usr/share/datasets/fashion-mnist]

Reads the idx files itself (gzip + numpy), preprocesses with torchvision's own transforms built from the
checkpoint's `preprocess` dict (Resize, CenterCrop, ToTensor, Normalize), and counts top-1 over all 10,000 images.
Only the architecture comes from the project (`models.create_model`), to build the network the weights fit.
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from models import create_model


def read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main() -> None:
    ckpt_path = Path(sys.argv[1])
    root = Path(sys.argv[2] if len(sys.argv) > 2 else "/usr/share/datasets/fashion-mnist")
    obj = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    pre = obj["preprocess"]
    model = create_model(obj["arch"], **obj["arch_kwargs"])
    model.load_state_dict(obj["state_dict"])
    model.eval()
    tf = transforms.Compose([transforms.Resize(pre["resize"]), transforms.CenterCrop(pre["crop"]),
                             transforms.ToTensor(), transforms.Normalize(pre["mean"], pre["std"])])
    images = read_idx(root / "t10k-images-idx3-ubyte.gz")
    labels = torch.from_numpy(read_idx(root / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    x = torch.stack([tf(Image.fromarray(im, pre["color_mode"])) for im in images])
    with torch.inference_mode():
        pred = torch.cat([model(x[i : i + 500]).argmax(1) for i in range(0, len(x), 500)])
    correct = int((pred == labels).sum())
    print(f"{ckpt_path}: {correct} / {len(labels)} correct on the official test set, top-1 {correct / len(labels):.4f}")


if __name__ == "__main__":
    main()
