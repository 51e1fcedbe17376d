"""What a run writes in `--out`: last.pt / best.pt each epoch, metrics.jsonl, plots, TensorBoard scalars, and at
the end model.pt (last.pt without its resume state, with the test metrics)."""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from models import save_checkpoint
from models.atomic import atomic_write_bytes
from models.checkpoint import publish_checkpoint
from models.errors import ConfigError
from training import distributed
from training.config import TrainConfig
from training.data import DataBundle
from training.metrics import ClassificationMeter
from training.plots import plot_history, plot_lr
from training.schedule import LrSchedule

log = logging.getLogger("resnet-train")


@dataclass
class Progress:
    """The per-epoch rows so far and the best validation epoch: what `metrics.jsonl` and a resume hold."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"val_top1": -1.0, "epoch": 0})

    def add(self, row: dict[str, Any]) -> bool:
        """Record an epoch's row; True when it is the best on validation so far."""
        self.history.append(row)
        if row["val_top1"] <= self.best["val_top1"]:
            return False
        self.best = {"val_top1": row["val_top1"], "val_top5": row["val_top5"], "epoch": row["epoch"]}
        return True


def epoch_row(epoch: int, train_stats: dict[str, float], meter: ClassificationMeter, lr: float,
              seconds: float) -> dict[str, Any]:
    """One line of metrics.jsonl: training and validation numbers, the last lr, speed and time."""
    r = meter.result()
    return {"epoch": epoch + 1, "train_loss": train_stats["train_loss"], "train_acc": train_stats["train_acc"],
            "val_top1": r["top1"], "val_top5": r["top5"], "val_loss": r["loss"], "val_count": r["count"], "lr": lr,
            "images_per_s": train_stats["images_per_s"], "epoch_time_s": seconds}


def tensorboard_writer(cfg: TrainConfig, info: distributed.DistInfo) -> Any:
    """A `SummaryWriter` on rank 0 when `--tensorboard DIR` is given, else None."""
    if not (cfg.tensorboard and info.is_main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install 'resnet-service[train]'") from None
    return SummaryWriter(cfg.tensorboard)


@dataclass
class RunOutputs:
    """Writes a run's files on rank 0 (every rank calls it; the others only wait at the barrier)."""

    cfg: TrainConfig
    info: distributed.DistInfo
    data: DataBundle
    arch_kwargs: dict[str, Any]
    lr_scheduler: LrSchedule
    writer: Any = None
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    t_start: float = field(default_factory=time.perf_counter)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def save_epoch(self, model: nn.Module, progress: Progress, meter: ClassificationMeter, improved: bool,
                   resume: dict[str, Any]) -> dict[str, Any]:
        """Write last.pt (with `resume`), best.pt when `improved`, metrics.jsonl and plots; returns the metrics."""
        row, data = progress.history[-1], self.data
        metrics = {**row, "best_val_top1": progress.best["val_top1"], "best_epoch": progress.best["epoch"],
                   "dataset": data.name, "train_size": len(data.train), "val_size": len(data.val),
                   "val_source": data.val_source, "confusion": meter.confusion.cpu().numpy().tolist()}
        if self.info.is_main:
            log.info("epoch %d/%d  train loss %.4f acc %.4f  val loss %.4f top1 %.4f top5 %.4f  %.0f img/s  %.0fs",
                     row["epoch"], self.cfg.epochs, row["train_loss"], row["train_acc"], row["val_loss"],
                     row["val_top1"], row["val_top5"], row["images_per_s"], row["epoch_time_s"])
            common = dict(arch=self.cfg.arch, arch_kwargs=self.arch_kwargs, classes=data.classes,
                          preprocess=data.spec, metrics=metrics, training=self.training_record())
            # rewritten whole (and atomically: a kill never leaves half a line): a resumed run keeps one row per epoch
            atomic_write_bytes(self.out / "metrics.jsonl",
                               "".join(json.dumps(x) + "\n" for x in progress.history).encode())
            if improved:
                save_checkpoint(self.out / "best.pt", model, **common)
            save_checkpoint(self.out / "last.pt", model, **common, extra={"resume": resume})
            plot_history(progress.history, self.out)
            self.add_scalars(row)
        distributed.barrier()
        return metrics

    def add_scalars(self, row: dict[str, Any]) -> None:
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()

    def training_record(self) -> dict[str, Any]:
        """How the weights were made: the config, versions, world size, times, batch and lr."""
        return {
            "config": self.cfg.to_dict(),
            "versions": {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
                         "python": platform.python_version()},
            "world_size": self.info.world_size,
            "started_at": self.started,
            "ended_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_time_s": time.perf_counter() - self.t_start,
            "global_batch_size": self.cfg.batch_size * self.info.world_size,
            "peak_lr": self.lr_scheduler.peak_lr,
        }

    def finish(self, metrics: dict[str, Any], test: dict[str, Any], best: dict[str, Any]) -> None:
        """The test metrics into last.pt, then `model.pt` (last.pt without its resume state) and the lr plot."""
        if self.info.is_main:
            last = self.out / "last.pt"
            if test:
                publish_checkpoint(last, last, metrics=test, keep_resume=True)
                log.info("test split (evaluated once, after the last epoch): top1 %.4f top5 %.4f",
                         test["test_top1"], test["test_top5"])
            publish_checkpoint(last, self.out / "model.pt")
            sched = self.lr_scheduler
            plot_lr([sched.lr(s) for s in range(sched.total_steps)], sched.steps_per_epoch, self.out / "lr.png")
            if self.writer is not None:
                self.writer.close()
            log.info("done: final val top1 %.4f (best %.4f at epoch %d); wrote %s",
                     metrics.get("val_top1", float("nan")), best["val_top1"], best["epoch"], self.out / "model.pt")
        distributed.barrier()
