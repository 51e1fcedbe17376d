"""`resnet-eval CHECKPOINT DATA [--split S] [--out DIR] [--batch-size N]`: accuracy of a checkpoint on one split.

DATA is an ImageFolder root or `fashion-mnist` / a folder of its idx files. `--split auto` reads the test split
(Fashion-MNIST's official test set; an ImageFolder's `test/`, else its `val/`, else the root itself, one folder
per class); `--split val` reads the held-out validation part the checkpoint was trained with. Images go through
the shared preprocessing exactly as the service does. Reports which split it read; writes `eval.json` and
`confusion_matrix.png` into `--out`.
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

from models import Checkpoint, load_checkpoint
from models.atomic import atomic_write_bytes
from models.cli import run_cli
from models.device import resolve_device
from models.errors import ResNetServiceError
from training.config import HelpFormatter, TrainConfig
from training.data import (
    FASHION_MNIST_CLASSES,
    DataError,
    FashionMnistSplit,
    ImageFolderDataset,
    collate_skip_none,
    fashion_mnist_split,
    is_fashion_mnist,
    scan_image_folder,
)
from training.metrics import ClassificationMeter
from training.plots import plot_confusion

log = logging.getLogger("resnet-eval")
DEFAULT_FASHION_MNIST_DIR = TrainConfig.fashion_mnist_dir


def checkpoint_fashion_mnist_split(data: str, ckpt: Checkpoint, split: str) -> tuple[FashionMnistSplit, str]:
    """Fashion-MNIST's `split` as the checkpoint's training held it out (its recorded val_fraction and seed), through
    the checkpoint's preprocessing; and the folder it was read from."""
    cfg = (ckpt.training or {}).get("config", {})
    root = DEFAULT_FASHION_MNIST_DIR if data == "fashion-mnist" else data
    part = fashion_mnist_split(root, split, ckpt.preprocess, holdout=cfg.get("val_fraction", TrainConfig.val_fraction),
                               seed=cfg.get("seed", TrainConfig.seed))
    return part, root


def with_root(name: str, root: str) -> str:
    """"fashion-mnist test split (ROOT)", "fashion-mnist validation split (0.1 of train, seed 0; ROOT)"."""
    return f"{name.removesuffix(')')}; {root})" if name.endswith(")") else f"{name} ({root})"


def image_folder_split(root: Path, split: str) -> tuple[Path, str]:
    """The folder `--split` names in an ImageFolder root, and the split's name."""
    if split == "auto":
        for name in ("test", "val"):
            if (root / name).is_dir():
                return root / name, name
        return root, "folder"
    folder = root if split == "folder" else root / split
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory (--split {split})")
    return folder, split


class _Indexed(Dataset):
    """Items with their position, so that failed images (dropped by the collate) can still be told apart."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        item = self.base[i]
        return None if item is None else (item[0], item[1], i)


def build_eval_set(data: str, ckpt: Checkpoint, split: str = "auto") -> tuple[Dataset, list[str], str, str]:
    """The dataset (items: preprocessed tensor, label), one id per item, what was read, and the split's name."""
    if is_fashion_mnist(data):
        if ckpt.classes != FASHION_MNIST_CLASSES:
            raise DataError(f"the checkpoint's classes are not Fashion-MNIST's: {ckpt.classes}")
        if split not in ("auto", "test", "val"):
            raise DataError(f"--split {split}: Fashion-MNIST has the splits test and val")
        name = "val" if split == "val" else "test"
        part, root = checkpoint_fashion_mnist_split(data, ckpt, name)
        ids = [f"train:{i}" if name == "val" else str(i) for i in part.indices]
        return part.dataset, ids, with_root(part.name, root), name
    folder, name = image_folder_split(Path(data), split)
    samples, _ = scan_image_folder(folder, ckpt.classes, subset=True)
    dataset = ImageFolderDataset(samples, ckpt.preprocess, train=False)
    return dataset, [str(s.path) for s in samples], str(folder), name


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
    """Top-1, top-5, mean cross-entropy, per-class accuracy and the confusion matrix (rows: true class).

    The same `ClassificationMeter` as the training loop's validation, so the numbers agree exactly.
    """
    meter = ClassificationMeter(len(classes))
    meter.update(torch.from_numpy(logits), torch.from_numpy(labels))
    result = meter.result(classes)
    return {**{k: result[k] for k in ("count", "top1", "top5", "loss", "per_class")},
            "confusion": result["confusion"].tolist()}


def evaluate_checkpoint(ckpt: Checkpoint, data: str, *, batch_size: int = 256, device: str = "auto",
                        workers: int = 0, split: str = "auto") -> dict[str, Any]:
    """Everything `resnet-eval` reports, as a dict (also what it writes to eval.json)."""
    dataset, ids, source, split_name = build_eval_set(data, ckpt, split)
    dev = resolve_device(device)
    loader = DataLoader(_Indexed(dataset), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_skip_none)
    model = ckpt.model.to(dev).eval()
    logits, labels, indices = predict_all(model, loader, dev)
    if len(labels) == 0:
        raise DataError(f"{source}: no image could be read")
    result = {"checkpoint": str(ckpt.path), "sha256": ckpt.sha256, "arch": ckpt.arch, "data": source,
              "split": split_name,
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
    lines = [f"split: {result['split']}",
             f"{result['data']}: {result['count']} images ({len(result['skipped'])} unreadable, skipped)",
             f"top-1 {result['top1']:.4f}   top-5 {result['top5']:.4f}   loss {result['loss']:.4f}", "",
             "per-class accuracy:"]
    width = max(len(c) for c in result["classes"])
    for c, v in result["per_class"].items():
        acc = "   n/a" if v["accuracy"] is None else f"{v['accuracy']:.4f}"
        lines.append(f"  {c:<{width}}  {acc}  ({v['count']} images)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resnet-eval", description=__doc__.splitlines()[0], allow_abbrev=False,
                                formatter_class=HelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint written by resnet-train (or a bare state dict with --arch)")
    p.add_argument("data", help="ImageFolder root, 'fashion-mnist', or a folder of Fashion-MNIST idx files")
    data = p.add_argument_group("data")
    data.add_argument("--split", default="auto", choices=("auto", "test", "val", "train", "folder"),
                      help="which split to evaluate: auto = the test split (an ImageFolder's test/, else val/, else "
                           "the folder itself); val = the held-out validation split; folder = DATA itself")
    model = p.add_argument_group("model")
    model.add_argument("--class-index", default=None, help="class_indices.json that must agree with the checkpoint; "
                       "required with --arch (default: none)")
    model.add_argument("--arch", default=None, help="architecture of a bare torchvision state dict (default: none)")
    output = p.add_argument_group("output")
    output.add_argument("--out", default="", help="folder for eval.json and confusion_matrix.png (default: eval/ "
                        "beside the checkpoint)")
    runtime = p.add_argument_group("runtime")
    runtime.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    runtime.add_argument("--device", default="auto", help="auto (CUDA when there is any, else the CPU), cpu, cuda "
                         "or cuda:N")
    runtime.add_argument("--workers", type=int, default=0, help="DataLoader worker processes that decode images; "
                         "0 = in the main process")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return run_cli("resnet-eval", lambda: evaluate_and_report(args), expected=(ResNetServiceError, RuntimeError))


def evaluate_and_report(args: argparse.Namespace) -> None:
    """Evaluate, write eval.json and the confusion matrix, print the report."""
    ckpt = load_checkpoint(args.checkpoint, class_index=args.class_index, arch=args.arch)
    result = evaluate_checkpoint(ckpt, args.data, batch_size=args.batch_size, device=args.device,
                                 workers=args.workers, split=args.split)
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "eval.json", (json.dumps(result, indent=1) + "\n").encode())
    plot_confusion(np.array(result["confusion"]), result["classes"], out / "confusion_matrix.png")
    print(report(result))
    print(f"\nwrote {out / 'eval.json'} and {out / 'confusion_matrix.png'}")


if __name__ == "__main__":
    sys.exit(main())
