"""`resnet-train`: the training worker, told top to bottom in `run`.

`run` reads as its steps: `start_or_resume` (config and resume state), `load_data`, `build_model`,
`build_optimisation`, then per epoch `train_one_epoch`, `validate` and `save_epoch`, and at the end `finish`
(the test split, once, and `model.pt`). Runs as one process or under `torchrun --nproc_per_node N` (DDP) with
no change. Writes, in `--out`: `last.pt` (every epoch, with resume state), `best.pt` (best validation top-1),
`model.pt` (final weights), `class_indices.json`, `metrics.jsonl`, PNG plots and, with `--tensorboard DIR`,
TensorBoard events. Every file loads with `torch.load(weights_only=True)`; checkpoint I/O is `models.checkpoint`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from models import CheckpointError, create_model, load_checkpoint, save_checkpoint
from models.atomic import atomic_write_bytes
from models.checkpoint import publish_checkpoint, read_training_state
from models.preprocess import normalize
from training import distributed
from training.augment import (
    build_sample_transform,
    cutout,
    kd_loss,
    mix_batch,
    one_hot_smooth,
    pad_crop_flip,
    random_erasing,
    soft_cross_entropy,
)
from training.config import TrainConfig, config_from_dict, parse_config
from training.data import DataBundle, DataError, WholeBatches, build_data, collate_skip_none, is_fashion_mnist
from training.ema import ModelEMA
from training.machine import resolve_auto
from training.metrics import ClassificationMeter
from training.optim import (
    build_optimizer,
    freeze_backbone,
    load_pretrained,
    optimizer_state_from_file,
    param_groups,
    set_train_mode,
)
from training.plots import plot_history, plot_lr
from training.rng import rng_state, seed_everything, set_rng_state
from training.schedule import lr_factor, scaled_lr

log = logging.getLogger("resnet-train")
# Flags a resumed run takes from the command line: how long and where it runs, not what it learns.
SAFE_ON_RESUME = ("epochs", "workers", "progress", "device", "threads", "resume", "out", "max_steps_per_epoch",
                  "tensorboard", "compile")


@dataclass
class Run:
    """What the steps of one training run share: the parts built once, and the progress a resume restores."""

    cfg: TrainConfig
    info: distributed.DistInfo
    data: DataBundle
    arch_kwargs: dict[str, Any]
    model: nn.Module
    ddp_model: nn.Module = None  # type: ignore[assignment]
    optimizer: torch.optim.Optimizer = None  # type: ignore[assignment]
    scaler: torch.amp.GradScaler = None  # type: ignore[assignment]
    ema: ModelEMA | None = None
    teacher: nn.Module | None = None
    peak_lr: float = 0.0
    sched: dict[str, Any] = field(default_factory=dict)
    train_loader: DataLoader = None  # type: ignore[assignment]
    val_loader: DataLoader = None  # type: ignore[assignment]
    train_sampler: DistributedSampler = None  # type: ignore[assignment]
    writer: Any = None
    start_epoch: int = 0
    step: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"val_top1": -1.0, "epoch": 0})
    history: list[dict[str, Any]] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    t_run: float = field(default_factory=time.perf_counter)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def eval_model(self) -> nn.Module:
        """What is validated and saved: the EMA weights when `--ema` is on."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def steps_per_epoch(self) -> int:
        return self.sched["steps_per_epoch"]


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train as `cfg` says; returns the final metrics (rank 0's view; all ranks agree)."""
    info = distributed.setup(cfg.device)
    cfg, resume = start_or_resume(cfg, info)
    configure_runtime(cfg, info)
    data = load_data(cfg)
    model, arch_kwargs = build_model(cfg, data, pretrained=resume is None)
    r = Run(cfg, info, data, arch_kwargs, model.to(info.device))
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    build_optimisation(r)
    if resume is not None:
        restore(r, resume)
    metrics: dict[str, Any] = {}
    for epoch in range(r.start_epoch, cfg.epochs):
        train_stats = train_one_epoch(r, epoch)
        meter = validate(r.eval_model, r.val_loader, info.device, data.classes, bool(cfg.channels_last))
        metrics = save_epoch(r, epoch, train_stats, meter)
    test = finish(r, metrics)
    return {**metrics, **test}


def start_or_resume(cfg: TrainConfig, info: distributed.DistInfo) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The config to run and, with `--resume` and a `last.pt`, its resume state.

    A resumed run keeps its stored config. Flags that only say how long and where it runs (`SAFE_ON_RESUME`) are
    applied, and said; any other flag that differs from the stored run is refused with its name and both values.
    """
    cfg.amp, cfg.channels_last, notes = resolve_auto(cfg.amp, cfg.channels_last, info.device)
    last = Path(cfg.out) / "last.pt"
    if not (cfg.resume and last.exists()):
        if cfg.resume and info.is_main:
            log.info("--resume: no %s yet, starting a new run", last)
        if info.is_main and notes:
            log.info("chose for this machine: %s", "; ".join(notes))
        return cfg, None
    try:
        stored_dict, resume = read_training_state(last)
    except CheckpointError as e:
        raise SystemExit(f"resnet-train: error: --resume: {e}") from None
    stored = config_from_dict(stored_dict)
    differ = [n for n in changed_flags(cfg) if n not in SAFE_ON_RESUME and getattr(cfg, n) != getattr(stored, n)]
    if differ:
        listed = ", ".join(f"--{n.replace('_', '-')} {getattr(cfg, n)} (stored: {getattr(stored, n)})" for n in differ)
        raise SystemExit(f"resnet-train: error: --resume: {listed} differ from the run stored in {last}; resume "
                         "without them, or start a new run with another --out")
    applied = [n for n in SAFE_ON_RESUME if getattr(cfg, n) != getattr(stored, n)]
    for name in SAFE_ON_RESUME:
        setattr(stored, name, getattr(cfg, name))
    if info.is_main and applied:
        log.info("--resume: applying %s", ", ".join(f"--{n.replace('_', '-')} {getattr(cfg, n)}" for n in applied))
    return stored, resume


def changed_flags(cfg: TrainConfig) -> list[str]:
    """The fields set on the command line; for a config built in code, those that differ from the defaults."""
    if cfg.given:
        return sorted(cfg.given)
    defaults = TrainConfig()
    return [f.name for f in dataclasses.fields(TrainConfig)
            if f.name != "given" and getattr(cfg, f.name) != getattr(defaults, f.name)]


def configure_runtime(cfg: TrainConfig, info: distributed.DistInfo) -> None:
    """Threads, determinism, the initial seed (the same initial weights on every rank) and the output folder."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    seed_everything(cfg.seed)
    if info.is_main:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)


def load_data(cfg: TrainConfig) -> DataBundle:
    """Train / validation / test splits, classes and the evaluation preprocessing (`training.data`)."""
    size = cfg.image_size or (28 if is_fashion_mnist(cfg.data) else 224)
    sample_tf = build_sample_transform(
        cfg.train_crop, size, hflip=cfg.hflip, auto_augment=cfg.auto_augment, rrc_min_scale=cfg.rrc_min_scale
    )
    return build_data(cfg.data, fashion_dir=cfg.fashion_mnist_dir, image_size=cfg.image_size, resize=cfg.resize,
                      val_fraction=cfg.val_fraction, seed=cfg.seed, train_transform=sample_tf)


def build_model(cfg: TrainConfig, data: DataBundle, *, pretrained: bool) -> tuple[nn.Module, dict[str, Any]]:
    """The architecture for this data (classes, channels, stem), with `--pretrained` weights on a new run."""
    spec = data.spec
    arch_kwargs: dict[str, Any] = {
        "num_classes": len(data.classes),
        "in_channels": spec.channels,
        "small_input": cfg.small_input if cfg.small_input is not None else spec.crop <= 64,
        "zero_init_residual": cfg.zero_init_residual,
    }
    if cfg.widths:
        arch_kwargs["widths"] = list(cfg.widths)
    if cfg.shortcut != "default":
        arch_kwargs["shortcut"] = cfg.shortcut
    model = create_model(cfg.arch, **arch_kwargs)
    if cfg.pretrained and pretrained:
        load_pretrained(model, cfg.pretrained)
    if cfg.freeze_backbone:
        freeze_backbone(model)
    return model, arch_kwargs


def build_optimisation(r: Run) -> None:
    """Optimiser, lr schedule, EMA, AMP scaler, distillation teacher, DDP wrapper, loaders, TensorBoard writer."""
    cfg, info = r.cfg, r.info
    r.peak_lr = scaled_lr(cfg.lr, cfg.batch_size * info.world_size, cfg.lr_scaling)
    r.optimizer = build_optimizer(param_groups(r.model, cfg, r.peak_lr), cfg)
    r.ema = ModelEMA(r.model, cfg.ema) if cfg.ema > 0 else None
    r.scaler = torch.amp.GradScaler(info.device.type, enabled=cfg.amp == "fp16")
    if cfg.kd_teacher:
        t = load_checkpoint(cfg.kd_teacher, map_location=info.device)
        if t.preprocess.to_dict() != r.data.spec.to_dict() or t.classes != r.data.classes:
            raise SystemExit(f"--kd-teacher {cfg.kd_teacher}: its classes or preprocessing differ from this dataset's")
        r.teacher = t.model.eval()
    r.ddp_model = DistributedDataParallel(r.model) if info.world_size > 1 else r.model
    if cfg.compile:
        r.ddp_model = torch.compile(r.ddp_model)
    r.train_loader, r.val_loader, r.train_sampler = make_loaders(r.data, cfg, info)
    steps = len(r.train_loader) if not cfg.max_steps_per_epoch else min(len(r.train_loader), cfg.max_steps_per_epoch)
    r.sched = dict(total_steps=cfg.epochs * steps, warmup_steps=round(cfg.warmup_epochs * steps),
                   steps_per_epoch=steps, schedule=cfg.schedule, min_ratio=cfg.min_lr_ratio,
                   milestones=cfg.step_milestones, gamma=cfg.step_gamma)
    r.writer = tensorboard_writer(cfg, info)


def restore(r: Run, resume: dict[str, Any]) -> None:
    """Weights, optimiser, scaler, EMA, progress and RNG state exactly as `last.pt` stored them."""
    r.model.load_state_dict(resume["model"])
    r.optimizer.load_state_dict(optimizer_state_from_file(resume["optimizer"]))
    r.scaler.load_state_dict(resume["scaler"])
    if r.ema is not None:
        r.ema.load_state_dict(resume["ema"])
    r.start_epoch, r.step, r.best, r.history = resume["epoch"], resume["step"], resume["best"], resume["history"]
    set_rng_state(resume["rng"])
    if r.info.is_main:
        log.info("resumed from %s at epoch %d (step %d)", r.out / "last.pt", r.start_epoch, r.step)


def train_one_epoch(r: Run, epoch: int) -> dict[str, float]:
    """One pass over this rank's shard; returns the epoch's training loss, accuracy and speed (summed over ranks)."""
    cfg, info = r.cfg, r.info
    seed_everything(cfg.seed + 1000 * epoch + info.rank)  # resumed and uninterrupted runs draw the same numbers
    r.train_sampler.set_epoch(epoch)
    set_train_mode(r.ddp_model)
    t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0.0
    bar = tqdm(total=r.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
               disable=not (info.is_main and cfg.progress), dynamic_ncols=True, file=sys.stderr)
    for i, (x, y) in enumerate(r.train_loader):
        if i >= r.steps_per_epoch:
            break
        if len(y) == 0:  # every image of this batch failed to decode (each was reported)
            continue
        loss, hits = train_step(r, x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True))
        seen += len(y)
        loss_sum += loss * len(y)
        correct += hits
        bar.update()
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}",
                        lr=f"{r.optimizer.param_groups[0]['lr']:.4g}",
                        img_s=f"{seen * info.world_size / (time.perf_counter() - t0):.0f}")
    bar.close()
    train_time = time.perf_counter() - t0
    tr = distributed.all_reduce_sum(torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=info.device))
    distributed.broadcast_from_main(r.model)  # validate (on all ranks) exactly the weights rank 0 saves
    if r.ema is not None:
        distributed.broadcast_from_main(r.ema.module)
    n = max(1.0, tr[2].item())
    return {"train_loss": tr[0].item() / n, "train_acc": tr[1].item() / n, "images_per_s": tr[2].item() / train_time,
            "t0": t0}


def train_step(r: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Augment the batch, one optimiser step at the scheduled lr; returns the batch's mean loss and its hits."""
    cfg, spec = r.cfg, r.data.spec
    if cfg.train_crop == "pad":
        x = pad_crop_flip(x, cfg.pad, cfg.hflip)
    x = normalize(x, spec)
    if cfg.cutout:
        x = cutout(x, cfg.cutout)
    if cfg.random_erasing:
        x = random_erasing(x, cfg.random_erasing)
    target = one_hot_smooth(y, len(r.data.classes), cfg.label_smoothing)
    x, target = mix_batch(x, target, mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, ricap_beta=cfg.ricap,
                          prob=cfg.mix_prob)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    factor = lr_factor(r.step, **r.sched)
    for g in r.optimizer.param_groups:
        g["lr"] = r.peak_lr * g["lr_mult"] * factor
    with autocast(cfg, r.info.device):
        logits = r.ddp_model(x)
        if r.teacher is not None:
            with torch.no_grad():
                t_logits = r.teacher(x)
            loss = kd_loss(logits, t_logits, target, alpha=cfg.kd_alpha, temperature=cfg.kd_temperature)
        else:
            loss = soft_cross_entropy(logits, target)
    r.optimizer.zero_grad(set_to_none=True)
    r.scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        r.scaler.unscale_(r.optimizer)
        nn.utils.clip_grad_norm_(r.model.parameters(), cfg.grad_clip)
    r.scaler.step(r.optimizer)
    r.scaler.update()
    if r.ema is not None:
        r.ema.update(r.model)
    r.step += 1
    return loss.item(), (logits.argmax(1) == target.argmax(1)).sum().item()


def autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@torch.inference_mode()
def validate(model: nn.Module, loader: DataLoader, device: torch.device, classes: list[str],
             channels_last: bool = False) -> ClassificationMeter:
    """Run `model` over this rank's shard of a held-out split; the meter holds the sums over all ranks."""
    model.eval()
    meter = ClassificationMeter(len(classes), device)
    for x, y in loader:
        if len(y) == 0:
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        meter.update(model(x), y)
    return meter.all_reduce()


def val_row(meter: ClassificationMeter) -> dict[str, Any]:
    """The per-epoch validation columns of metrics.jsonl."""
    r = meter.result()
    return {"val_top1": r["top1"], "val_top5": r["top5"], "val_loss": r["loss"], "val_count": r["count"]}


def make_loaders(data: DataBundle, cfg: TrainConfig,
                 info: distributed.DistInfo) -> tuple[DataLoader, DataLoader, DistributedSampler]:
    """Train loader (sharded, reshuffled per epoch through the returned sampler) and this rank's validation shard.

    In-memory data with no per-sample transform (Fashion-MNIST) is fetched a whole batch at a time.
    """
    sampler = DistributedSampler(
        data.train, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    drop_last = len(data.train) > cfg.batch_size * info.world_size
    kw: dict[str, Any] = {
        "num_workers": cfg.workers,
        "pin_memory": info.device.type == "cuda",
        "collate_fn": collate_skip_none,
        # fresh workers each epoch: they are seeded from the per-epoch seed, so a resumed run augments identically
        "persistent_workers": False,
    }
    if getattr(data.train, "batchable", False):
        train = DataLoader(WholeBatches(data.train), batch_size=None, pin_memory=kw["pin_memory"],
                           sampler=BatchSampler(sampler, cfg.batch_size, drop_last))
    else:
        train = DataLoader(data.train, batch_size=cfg.batch_size, sampler=sampler, drop_last=drop_last, **kw)
    return train, shard_loader(data.val, cfg, info, kw), sampler


def shard_loader(dataset: Dataset, cfg: TrainConfig, info: distributed.DistInfo, kw: dict[str, Any]) -> DataLoader:
    """This rank's share of a held-out split, in order (`evaluate` sums the shards)."""
    shard = Subset(dataset, list(range(info.rank, len(dataset), info.world_size)))
    return DataLoader(shard, batch_size=max(256, cfg.batch_size), shuffle=False, **kw)


def test_metrics(model: nn.Module, data: DataBundle, cfg: TrainConfig, info: distributed.DistInfo) -> dict[str, Any]:
    """The test split, evaluated once after the last epoch: `test_top1`, `test_top5`, per-class accuracy."""
    if data.test is None:
        return {}
    loader = shard_loader(data.test, cfg, info, {"num_workers": cfg.workers, "collate_fn": collate_skip_none})
    r = validate(model, loader, info.device, data.classes, bool(cfg.channels_last)).result(data.classes)
    return {"test_top1": r["top1"], "test_top5": r["top5"], "test_loss": r["loss"], "test_count": r["count"],
            "test_per_class": r["per_class"], "test_confusion": r["confusion"].tolist(), "test_split": data.test_name}


def tensorboard_writer(cfg: TrainConfig, info: distributed.DistInfo):
    """A `SummaryWriter` on rank 0 when `--tensorboard DIR` is given, else None."""
    if not (cfg.tensorboard and info.is_main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SystemExit("resnet-train: error: --tensorboard needs the tensorboard package: "
                         "pip install 'resnet-service[train]'") from None
    return SummaryWriter(cfg.tensorboard)


def save_epoch(r: Run, epoch: int, train_stats: dict[str, float], meter: ClassificationMeter) -> dict[str, Any]:
    """Record the epoch (history, best on validation) and, on rank 0, write last.pt, best.pt, metrics and plots."""
    t0 = train_stats.pop("t0")
    row = {"epoch": epoch + 1, "train_loss": train_stats["train_loss"], "train_acc": train_stats["train_acc"],
           **val_row(meter), "lr": r.optimizer.param_groups[0]["lr"], "images_per_s": train_stats["images_per_s"],
           "epoch_time_s": time.perf_counter() - t0}
    r.history.append(row)
    improved = row["val_top1"] > r.best["val_top1"]
    if improved:
        r.best = {"val_top1": row["val_top1"], "val_top5": row["val_top5"], "epoch": epoch + 1}
    data = r.data
    metrics = {**row, "best_val_top1": r.best["val_top1"], "best_epoch": r.best["epoch"], "dataset": data.name,
               "train_size": len(data.train), "val_size": len(data.val), "val_source": data.val_source,
               "confusion": meter.confusion.cpu().numpy().tolist()}
    if r.info.is_main:
        log.info("epoch %d/%d  train loss %.4f acc %.4f  val loss %.4f top1 %.4f top5 %.4f  %.0f img/s  %.0fs",
                 epoch + 1, r.cfg.epochs, row["train_loss"], row["train_acc"], row["val_loss"], row["val_top1"],
                 row["val_top5"], row["images_per_s"], row["epoch_time_s"])
        common = dict(arch=r.cfg.arch, arch_kwargs=r.arch_kwargs, classes=data.classes, preprocess=data.spec,
                      metrics=metrics, training=training_record(r))
        resume = {"model": r.model.state_dict(), "optimizer": r.optimizer.state_dict(),
                  "scaler": r.scaler.state_dict(), "ema": r.ema.state_dict() if r.ema is not None else None,
                  "epoch": epoch + 1, "step": r.step, "best": r.best, "history": r.history, "rng": rng_state()}
        # rewritten whole (and atomically: a kill never leaves half a line): a resumed run keeps one row per epoch
        atomic_write_bytes(r.out / "metrics.jsonl", "".join(json.dumps(x) + "\n" for x in r.history).encode())
        if improved:
            save_checkpoint(r.out / "best.pt", r.eval_model, **common)
        save_checkpoint(r.out / "last.pt", r.eval_model, **common, extra={"resume": resume})
        plot_history(r.history, r.out)
        if r.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    r.writer.add_scalar(key, value, epoch + 1)
            r.writer.flush()
    distributed.barrier()
    return metrics


def training_record(r: Run) -> dict[str, Any]:
    """How the weights were made: the config, versions, world size, times, batch and lr."""
    return {
        "config": r.cfg.to_dict(),
        "versions": {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
                     "python": platform.python_version()},
        "world_size": r.info.world_size,
        "started_at": r.started,
        "ended_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_time_s": time.perf_counter() - r.t_run,
        "global_batch_size": r.cfg.batch_size * r.info.world_size,
        "peak_lr": r.peak_lr,
    }


def finish(r: Run, metrics: dict[str, Any]) -> dict[str, Any]:
    """The test split, evaluated once, now; then `model.pt` (last.pt without its resume state) and the lr plot."""
    test = test_metrics(r.eval_model, r.data, r.cfg, r.info)
    if r.info.is_main:
        last = r.out / "last.pt"
        if test:
            publish_checkpoint(last, last, metrics=test, keep_resume=True)
            log.info("test split (evaluated once, after the last epoch): top1 %.4f top5 %.4f",
                     test["test_top1"], test["test_top5"])
        publish_checkpoint(last, r.out / "model.pt")
        lrs = [r.peak_lr * lr_factor(s, **r.sched) for s in range(r.sched["total_steps"])]
        plot_lr(lrs, r.steps_per_epoch, r.out / "lr.png")
        if r.writer is not None:
            r.writer.close()
        log.info("done: final val top1 %.4f (best %.4f at epoch %d); wrote %s", metrics.get("val_top1", float("nan")),
                 r.best["val_top1"], r.best["epoch"], r.out / "model.pt")
    distributed.barrier()
    distributed.cleanup()
    return test


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_config(argv)
    try:
        run(cfg)
    except DataError as e:  # a dataset we cannot train on: say why, without a traceback
        raise SystemExit(f"resnet-train: error: {e}") from None


if __name__ == "__main__":
    main()
