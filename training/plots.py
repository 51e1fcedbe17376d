"""PNG plots a user can read: loss and accuracy curves, the learning-rate schedule, a confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_history(history: Sequence[dict], out: Path) -> list[Path]:
    """`loss.png` and `accuracy.png` from the per-epoch rows of metrics.jsonl."""
    if not history:
        return []
    epochs = [r["epoch"] for r in history]
    paths = []
    for name, keys in (("loss", ("train_loss", "val_loss")), ("accuracy", ("train_acc", "val_top1"))):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for k in keys:
            ax.plot(epochs, [r[k] for r in history], marker="o", ms=3, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths


def plot_lr(lrs: Sequence[float], steps_per_epoch: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    ax.plot(np.arange(len(lrs)) / max(1, steps_per_epoch), lrs)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    """Row-normalised confusion matrix (rows: true class), with counts in the cells."""
    k = len(classes)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.55 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
