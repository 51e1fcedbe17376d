"""`resnet-train`: the training worker, told top to bottom in `run` (torchvision's reference `main(args)`).

`run` builds each object in the order it is needed (data, model, EMA, scaler, loss, loaders, lr schedule,
optimiser), restores them from `last.pt` with `--resume`, then per epoch calls `train_one_epoch` and `evaluate` and
writes the epoch's files; the test split is evaluated once, at the end. Runs as one process or under
`torchrun --nproc_per_node N` (DDP) with no change. Writes, in `--out`: `last.pt` (every epoch, with resume
state), `best.pt` (best validation top-1), `model.pt` (final weights), `class_indices.json`, `metrics.jsonl`, PNG
plots and, with `--tensorboard DIR`, TensorBoard events (`training.outputs`). Every checkpoint loads with
`weights_only=True`; checkpoint I/O is `models.checkpoint`'s.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from models import create_model, load_checkpoint
from models.cli import run_cli
from models.errors import ConfigError
from training import distributed
from training.augment import BatchAugment, Criterion, build_criterion, build_sample_transform
from training.config import TrainConfig, parse_config
from training.data import DataBundle, WholeBatches, build_data, collate_skip_none, is_fashion_mnist
from training.ema import ModelEMA
from training.metrics import ClassificationMeter
from training.optim import (
    build_optimizer,
    freeze_backbone,
    load_pretrained,
    optimizer_state_from_file,
    param_groups,
    set_train_mode,
)
from training.outputs import Progress, RunOutputs, epoch_row, tensorboard_writer
from training.resume import resume_state, start_or_resume
from training.rng import seed_everything, set_rng_state
from training.schedule import LrSchedule

log = logging.getLogger("resnet-train")


def train_one_epoch(model: nn.Module, criterion: Criterion, optimizer: torch.optim.Optimizer, data_loader: DataLoader,
                    device: torch.device, epoch: int, cfg: TrainConfig, lr_scheduler: LrSchedule,
                    augment: BatchAugment, model_without_ddp: nn.Module, model_ema: ModelEMA | None = None,
                    scaler: torch.amp.GradScaler | None = None, world_size: int = 1,
                    show_progress: bool = False) -> dict[str, float]:
    """One pass over this rank's shard; returns the epoch's training loss, accuracy and speed (summed over ranks).

    `model` runs the forward pass (DDP- or compile-wrapped); `model_without_ddp` is the same weights unwrapped.
    """
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    set_train_mode(model)
    steps = lr_scheduler.steps_per_epoch
    t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0.0
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
               disable=not show_progress, dynamic_ncols=True, file=sys.stderr)
    for i, (x, y) in enumerate(data_loader):
        if i >= steps:
            break
        if len(y) == 0:  # every image of this batch failed to decode (each was reported)
            continue
        x, target = augment(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        lr_scheduler.apply(optimizer)
        with autocast(cfg, device):
            logits = model(x)
            loss = criterion(logits, target, x)
        optimizer_step(loss, optimizer, scaler, model_without_ddp, cfg.grad_clip)
        if model_ema is not None:
            model_ema.update(model_without_ddp)
        lr_scheduler.step += 1
        seen += len(y)
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == target.argmax(1)).sum().item()
        bar.update()
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}",
                        lr=f"{optimizer.param_groups[0]['lr']:.4g}",
                        img_s=f"{seen * world_size / (time.perf_counter() - t0):.0f}")
    bar.close()
    train_time = time.perf_counter() - t0
    tr = distributed.all_reduce_sum(torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=device))
    distributed.broadcast_from_main(model_without_ddp)  # validate (on all ranks) exactly the weights rank 0 saves
    if model_ema is not None:
        distributed.broadcast_from_main(model_ema.module)
    n = max(1.0, tr[2].item())
    return {"train_loss": tr[0].item() / n, "train_acc": tr[1].item() / n, "images_per_s": tr[2].item() / train_time}


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   model: nn.Module, grad_clip: float) -> None:
    """Backward (loss-scaled under fp16), gradient clipping to `grad_clip` (0 = off), one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if cfg.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@torch.inference_mode()
def evaluate(model: nn.Module, data_loader: DataLoader, device: torch.device, num_classes: int,
             channels_last: bool = False) -> ClassificationMeter:
    """Run `model` over this rank's shard of a held-out split; the meter holds the sums over all ranks."""
    model.eval()
    meter = ClassificationMeter(num_classes, device)
    for x, y in data_loader:
        if len(y) == 0:
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        meter.update(model(x), y)
    return meter.all_reduce()


def load_data(cfg: TrainConfig) -> DataBundle:
    """Train / validation / test splits, classes and the evaluation preprocessing (`training.data`)."""
    size = cfg.image_size or (28 if is_fashion_mnist(cfg.data) else 224)
    sample_tf = build_sample_transform(
        cfg.train_crop, size, hflip=cfg.hflip, auto_augment=cfg.auto_augment, rrc_min_scale=cfg.rrc_min_scale
    )
    return build_data(cfg.data, fashion_dir=cfg.fashion_mnist_dir, image_size=cfg.image_size, resize=cfg.resize,
                      val_fraction=cfg.val_fraction, seed=cfg.seed, train_transform=sample_tf)


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
    r = evaluate(model, loader, info.device, len(data.classes), bool(cfg.channels_last)).result(data.classes)
    return {"test_top1": r["top1"], "test_top5": r["top5"], "test_loss": r["loss"], "test_count": r["count"],
            "test_per_class": r["per_class"], "test_confusion": r["confusion"].tolist(), "test_split": data.test_name}


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


def load_teacher(cfg: TrainConfig, data: DataBundle, device: torch.device) -> nn.Module | None:
    """The `--kd-teacher` checkpoint's model, which must know this data's classes and preprocessing."""
    if not cfg.kd_teacher:
        return None
    t = load_checkpoint(cfg.kd_teacher, map_location=device)
    if t.preprocess.to_dict() != data.spec.to_dict() or t.classes != data.classes:
        raise ConfigError(f"--kd-teacher {cfg.kd_teacher}: its classes or preprocessing differ from this dataset's")
    return t.model.eval()


def wrap_model(model: nn.Module, cfg: TrainConfig, info: distributed.DistInfo) -> nn.Module:
    """What runs the training forward pass: `model` under DDP with several processes, compiled with `--compile`."""
    wrapped = DistributedDataParallel(model) if info.world_size > 1 else model
    return torch.compile(wrapped) if cfg.compile else wrapped  # type: ignore[return-value]


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


def run(args: TrainConfig) -> dict[str, Any]:
    """Train as `args` says; returns the final metrics (rank 0's view; all ranks agree)."""
    info = distributed.setup(args.device)
    cfg, resume = start_or_resume(args, info)
    configure_runtime(cfg, info)
    data = load_data(cfg)
    model, arch_kwargs = build_model(cfg, data, pretrained=resume is None)
    model.to(info.device, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format)
    model_ema = ModelEMA(model, cfg.ema) if cfg.ema > 0 else None
    scaler = torch.amp.GradScaler(info.device.type, enabled=cfg.amp == "fp16")
    criterion = build_criterion(load_teacher(cfg, data, info.device), alpha=cfg.kd_alpha,
                                temperature=cfg.kd_temperature)
    model_ddp = wrap_model(model, cfg, info)
    train_loader, val_loader, train_sampler = make_loaders(data, cfg, info)
    lr_scheduler = LrSchedule.from_config(cfg, info.world_size, len(train_loader))
    optimizer = build_optimizer(param_groups(model, cfg, lr_scheduler.peak_lr), cfg)
    start_epoch, progress = 0, Progress()
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(optimizer_state_from_file(resume["optimizer"]))
        scaler.load_state_dict(resume["scaler"])
        if model_ema is not None:
            model_ema.load_state_dict(resume["ema"])
        start_epoch, lr_scheduler.step = resume["epoch"], resume["step"]
        progress = Progress(resume["history"], resume["best"])
        set_rng_state(resume["rng"])
        if info.is_main:
            log.info("resumed from %s at epoch %d (step %d)", Path(cfg.out) / "last.pt", start_epoch, lr_scheduler.step)
    outputs = RunOutputs(cfg, info, data, arch_kwargs, lr_scheduler, tensorboard_writer(cfg, info))
    augment = BatchAugment(cfg, data.spec, len(data.classes))
    eval_model = model_ema.module if model_ema is not None else model  # what is validated and saved
    metrics: dict[str, Any] = {}
    for epoch in range(start_epoch, cfg.epochs):
        seed_everything(cfg.seed + 1000 * epoch + info.rank)  # resumed and uninterrupted runs draw the same numbers
        train_sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        train_stats = train_one_epoch(model_ddp, criterion, optimizer, train_loader, info.device, epoch, cfg,
                                      lr_scheduler, augment, model, model_ema, scaler, world_size=info.world_size,
                                      show_progress=info.is_main and cfg.progress)
        meter = evaluate(eval_model, val_loader, info.device, len(data.classes), bool(cfg.channels_last))
        improved = progress.add(epoch_row(epoch, train_stats, meter, optimizer.param_groups[0]["lr"],
                                          time.perf_counter() - t0))
        state = resume_state(model, optimizer, scaler, model_ema, epoch=epoch + 1, step=lr_scheduler.step,
                             best=progress.best, history=progress.history)
        metrics = outputs.save_epoch(eval_model, progress, meter, improved, state)
    test = test_metrics(eval_model, data, cfg, info)
    outputs.finish(metrics, test, progress.best)
    distributed.cleanup()
    return {**metrics, **test}


def main(argv: list[str] | None = None) -> int:
    """The `resnet-train` command: expected failures are one line, `resnet-train: error: ...`, and exit status 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_config(argv)

    def body() -> None:
        run(cfg)

    return run_cli("resnet-train", body)


if __name__ == "__main__":
    sys.exit(main())
