"""`resnet-eval CHECKPOINT DATA [--out DIR] [--batch-size N] [--class-index F]`: accuracy of a checkpoint.

DATA is an ImageFolder root (its `val/` if present, else the root itself, one folder per class) or
`fashion-mnist` / a folder of its idx files (the official test split). Images go through the shared
preprocessing exactly as the service does, so the predictions here are the service's predictions.
Writes `eval.json` and `confusion_matrix.png` into `--out`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from models import Checkpoint, CheckpointError, load_checkpoint
from models.atomic import atomic_write_bytes
from training.config import TrainConfig
from training.data import (
    FASHION_MNIST_CLASSES,
    IMAGE_EXTENSIONS,
    DataError,
    ImageFolderDataset,
    PreprocessedArrayDataset,
    Sample,
    collate_skip_none,
    is_fashion_mnist,
    load_fashion_mnist,
)
from training.distributed import resolve_device
from training.plots import plot_confusion

log = logging.getLogger("resnet-eval")
DEFAULT_FASHION_MNIST_DIR = TrainConfig.fashion_mnist_dir


def image_folder_samples(root: Path, classes: list[str]) -> tuple[list[Sample], Path]:
    """`root/val/<class>/*` (or `root/<class>/*`), labelled by the checkpoint's class order."""
    folder = root / "val" if (root / "val").is_dir() else root
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory")
    found = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DataError(f"{folder}: no class folders")
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise DataError(f"{folder}: folder(s) {unknown} are not classes of the checkpoint ({', '.join(classes)})")
    samples = [
        Sample(p, classes.index(name))
        for name in found
        for p in sorted((folder / name).rglob("*"))
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    ]
    if not samples:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return samples, folder


class _Indexed(Dataset):
    """Items with their position, so that failed images (dropped by the collate) can still be told apart."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        item = self.base[i]
        return None if item is None else (item[0], item[1], i)


def build_eval_set(data: str, ckpt: Checkpoint) -> tuple[Dataset, list[str], str]:
    """The dataset (items: preprocessed tensor, label), one id per item, and a description of what was read."""
    if is_fashion_mnist(data):
        if ckpt.classes != FASHION_MNIST_CLASSES:
            raise DataError(f"the checkpoint's classes are not Fashion-MNIST's: {ckpt.classes}")
        root = DEFAULT_FASHION_MNIST_DIR if data == "fashion-mnist" else data
        images, labels = load_fashion_mnist(root, "test")
        return PreprocessedArrayDataset(images, labels, ckpt.preprocess), [str(i) for i in range(len(labels))], \
            f"fashion-mnist test split ({root})"
    samples, folder = image_folder_samples(Path(data), ckpt.classes)
    dataset = ImageFolderDataset(samples, ckpt.preprocess, train=False)
    return dataset, [str(s.path) for s in samples], str(folder)


@torch.inference_mode()
def predict_all(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, ...]:
    """Logits of every item that loaded; returns (logits, labels, indices) of those items."""
    logits, labels, indices = [], [], []
    for batch in loader:
        if len(batch[0]) == 0:
            continue
        x, y, i = batch
        logits.append(model(x.to(device)).float().cpu())
        labels.append(y)
        indices.append(i)
    if not logits:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy(), torch.cat(indices).numpy()


def summarize(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Top-1, top-5, mean cross-entropy, per-class accuracy and the confusion matrix (rows: true class)."""
    k = len(classes)
    t = torch.from_numpy(logits)
    y = torch.from_numpy(labels)
    top = t.topk(min(5, k), dim=1).indices
    pred = top[:, 0]
    cm = torch.bincount(y * k + pred, minlength=k * k).view(k, k).numpy()
    totals = cm.sum(axis=1)
    return {
        "count": len(labels),
        "top1": int((pred == y).sum()) / len(labels),  # exact ratios, as the training loop reports them
        "top5": int((top == y[:, None]).any(1).sum()) / len(labels),
        "loss": float(torch.nn.functional.cross_entropy(t, y)),
        "per_class": {c: {"accuracy": float(cm[i, i] / totals[i]) if totals[i] else None, "count": int(totals[i])}
                      for i, c in enumerate(classes)},
        "confusion": cm.tolist(),
    }


def evaluate_checkpoint(ckpt: Checkpoint, data: str, *, batch_size: int = 256, device: str = "auto",
                        workers: int = 0) -> dict[str, Any]:
    """Everything `resnet-eval` reports, as a dict (also what it writes to eval.json)."""
    dataset, ids, source = build_eval_set(data, ckpt)
    dev = resolve_device(device)
    loader = DataLoader(_Indexed(dataset), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_skip_none)
    model = ckpt.model.to(dev).eval()
    logits, labels, indices = predict_all(model, loader, dev)
    if len(labels) == 0:
        raise DataError(f"{source}: no image could be read")
    result = {"checkpoint": str(ckpt.path), "sha256": ckpt.sha256, "arch": ckpt.arch, "data": source,
              "classes": ckpt.classes, **summarize(logits, labels, ckpt.classes)}
    failed = sorted(set(range(len(dataset))) - set(indices.tolist()))
    result["skipped"] = [ids[i] for i in failed]
    scores = torch.softmax(torch.from_numpy(logits), dim=1).max(dim=1)
    result["predictions"] = [
        {"id": ids[i], "label": int(y), "prediction": int(p), "score": float(s)}
        for i, y, p, s in zip(indices.tolist(), labels.tolist(), scores.indices.tolist(), scores.values.tolist(),
                              strict=True)
    ]
    return result


def report(result: dict[str, Any]) -> str:
    lines = [f"{result['data']}: {result['count']} images ({len(result['skipped'])} unreadable, skipped)",
             f"top-1 {result['top1']:.4f}   top-5 {result['top5']:.4f}   loss {result['loss']:.4f}", "",
             "per-class accuracy:"]
    width = max(len(c) for c in result["classes"])
    for c, v in result["per_class"].items():
        acc = "   n/a" if v["accuracy"] is None else f"{v['accuracy']:.4f}"
        lines.append(f"  {c:<{width}}  {acc}  ({v['count']} images)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resnet-eval", description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("checkpoint", help="a checkpoint written by resnet-train (or a bare state dict with --arch)")
    p.add_argument("data", help="ImageFolder root, 'fashion-mnist', or a folder of Fashion-MNIST idx files")
    p.add_argument("--out", default="", help="folder for eval.json and confusion_matrix.png (default: beside "
                                             "the checkpoint, in eval/)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--class-index", default=None, help="class_indices.json that must agree with the checkpoint")
    p.add_argument("--arch", default=None, help="architecture of a bare torchvision state dict")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        build_parser().error("--batch-size must be at least 1")
    try:
        ckpt = load_checkpoint(args.checkpoint, class_index=args.class_index, arch=args.arch)
        result = evaluate_checkpoint(ckpt, args.data, batch_size=args.batch_size, device=args.device,
                                     workers=args.workers)
    except (CheckpointError, DataError, RuntimeError) as e:
        print(f"resnet-eval: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "eval.json", (json.dumps(result, indent=1) + "\n").encode())
    plot_confusion(np.array(result["confusion"]), result["classes"], out / "confusion_matrix.png")
    print(report(result))
    print(f"\nwrote {out / 'eval.json'} and {out / 'confusion_matrix.png'}")


if __name__ == "__main__":
    main()
