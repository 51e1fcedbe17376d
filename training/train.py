"""`resnet-train`: config, data, model, optimiser, loop, evaluate, checkpoint — top to bottom.

Runs as one process or under `torchrun --nproc_per_node N` (DDP) with no change. Writes, in `--out`:
`last.pt` (every epoch, with resume state), `best.pt` (on improvement), `model.pt` (final weights),
`class_indices.json`, `metrics.jsonl` and PNG plots. Every file loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from models import create_model, load_checkpoint, save_checkpoint
from models.atomic import atomic_torch_save, atomic_write_bytes
from models.checkpoint import _unwrap_bare
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
from training.data import DataBundle, DataError, build_data, collate_skip_none, is_fashion_mnist
from training.ema import ModelEMA
from training.plots import plot_history, plot_lr
from training.schedule import lr_factor, scaled_lr

log = logging.getLogger("resnet-train")
RUN_CONTROL = ("epochs", "workers", "progress", "device", "threads", "resume", "out", "max_steps_per_epoch")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def optimizer_state_from_file(state: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint stores dict keys as strings; the optimiser indexes its per-parameter state by int.

    Without this, `load_state_dict` silently keeps the momentum / Adam moments under keys no parameter uses.
    """
    return {**state, "state": {int(k): v for k, v in state["state"].items()}}


def load_pretrained(model: nn.Module, path: str) -> None:
    """torchvision-format weights (or a project checkpoint) into `model`, all but the classifier (new classes)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # missing, corrupt, or holding more than tensors and plain values
        raise SystemExit(f"--pretrained {path}: cannot load ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    state = _unwrap_bare(obj) or (obj.get("state_dict") if isinstance(obj, dict) else None)
    if not state:
        raise SystemExit(f"--pretrained {path}: not a state dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches (e.g. a 7x7 stem into a small-input 3x3 stem)
        raise SystemExit(f"--pretrained {path}: does not fit the model: {' '.join(str(e).split())[:500]}") from None
    bad = [k for k in missing if not k.startswith("fc.")]
    if bad or unexpected:
        raise SystemExit(
            f"--pretrained {path}: does not fit the model (missing {bad[:5]}, unexpected {unexpected[:5]})"
        )


def freeze_backbone(model: nn.Module) -> None:
    """Train only the classifier: every other parameter stops receiving gradients."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("fc."))


def set_train_mode(model: nn.Module) -> None:
    """Training mode, except batch norms whose parameters are frozen: their statistics stay as loaded."""
    model.train()
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            m.eval()


def param_groups(model: nn.Module, cfg: TrainConfig, base_lr: float) -> list[dict[str, Any]]:
    """Weight decay off for norm layers and biases (if asked); the classifier may get its own lr."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (cfg.no_decay_norm_bias and p.ndim <= 1)
        groups.setdefault((name.startswith("fc."), decay), []).append(p)
    return [
        {
            "params": ps,
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "lr_mult": cfg.head_lr_mult if head else 1.0,
            "lr": base_lr,
        }
        for (head, decay), ps in groups.items()
    ]


def build_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups)


def autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: DataLoader, device: torch.device, num_classes: int, channels_last: bool = False
) -> dict[str, Any]:
    """Top-1, top-5, mean loss and the confusion matrix, summed over all ranks (no sample counted twice)."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # top1, top5, loss, count
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    k = min(5, num_classes)
    for x, y in loader:
        if len(y) == 0:
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x).float()
        top = logits.topk(k, dim=1).indices
        sums += torch.tensor(
            [
                (top[:, 0] == y).sum().item(),
                (top == y[:, None]).any(1).sum().item(),
                nn.functional.cross_entropy(logits, y, reduction="sum").item(),
                len(y),
            ],
            dtype=torch.float64,
            device=device,
        )
        cm += torch.bincount(y * num_classes + top[:, 0], minlength=num_classes**2).view(num_classes, num_classes)
    distributed.all_reduce_sum(sums)
    distributed.all_reduce_sum(cm)
    n = max(1.0, sums[3].item())
    return {
        "val_top1": sums[0].item() / n,
        "val_top5": sums[1].item() / n,
        "val_loss": sums[2].item() / n,
        "val_count": int(sums[3].item()),
        "confusion": cm.cpu().numpy(),
    }


def make_loaders(data: DataBundle, cfg: TrainConfig, info: distributed.DistInfo) -> tuple[DataLoader, DataLoader]:
    sampler = DistributedSampler(
        data.train, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    kw: dict[str, Any] = {
        "num_workers": cfg.workers,
        "pin_memory": info.device.type == "cuda",
        "collate_fn": collate_skip_none,
        # fresh workers each epoch: they are seeded from the per-epoch seed, so a resumed run augments identically
        "persistent_workers": False,
    }
    train = DataLoader(
        data.train,
        batch_size=cfg.batch_size,
        sampler=sampler,
        drop_last=len(data.train) > cfg.batch_size * info.world_size,
        **kw,
    )
    val_shard = Subset(data.val, list(range(info.rank, len(data.val), info.world_size)))
    val = DataLoader(val_shard, batch_size=max(256, cfg.batch_size), shuffle=False, **kw)
    return train, val


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train as `cfg` says; returns the final metrics (rank 0's view; all ranks agree)."""
    info = distributed.setup(cfg.device)
    out = Path(cfg.out)
    resume_state: dict[str, Any] | None = None
    if cfg.resume and (out / "last.pt").exists():
        obj = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        stored = config_from_dict(obj["training"]["config"])
        for name in RUN_CONTROL:
            setattr(stored, name, getattr(cfg, name))
        cfg, resume_state = stored, obj["resume"]
    elif cfg.resume and info.is_main:
        log.info("--resume: no %s yet, starting a new run", out / "last.pt")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    seed_everything(cfg.seed)  # the same initial weights on every rank (the EMA copy starts from them too)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")

    size = cfg.image_size or (28 if is_fashion_mnist(cfg.data) else 224)
    sample_tf = build_sample_transform(
        cfg.train_crop, size, hflip=cfg.hflip, auto_augment=cfg.auto_augment, rrc_min_scale=cfg.rrc_min_scale
    )
    data = build_data(
        cfg.data,
        fashion_dir=cfg.fashion_mnist_dir,
        image_size=cfg.image_size,
        resize=cfg.resize,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        train_transform=sample_tf,
    )
    spec, classes = data.spec, data.classes
    small_input = cfg.small_input if cfg.small_input is not None else spec.crop <= 64
    arch_kwargs: dict[str, Any] = {
        "num_classes": len(classes),
        "in_channels": spec.channels,
        "small_input": small_input,
        "zero_init_residual": cfg.zero_init_residual,
    }
    if cfg.widths:
        arch_kwargs["widths"] = list(cfg.widths)
    if cfg.shortcut != "default":
        arch_kwargs["shortcut"] = cfg.shortcut
    model = create_model(cfg.arch, **arch_kwargs)
    if cfg.pretrained and resume_state is None:
        load_pretrained(model, cfg.pretrained)
    if cfg.freeze_backbone:
        freeze_backbone(model)
    model.to(info.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)

    global_batch = cfg.batch_size * info.world_size
    peak_lr = scaled_lr(cfg.lr, global_batch, cfg.lr_scaling)
    optimizer = build_optimizer(param_groups(model, cfg, peak_lr), cfg)
    ema = ModelEMA(model, cfg.ema) if cfg.ema > 0 else None
    scaler = torch.amp.GradScaler(info.device.type, enabled=cfg.amp == "fp16")
    teacher = None
    if cfg.kd_teacher:
        t = load_checkpoint(cfg.kd_teacher, map_location=info.device)
        if t.preprocess.to_dict() != spec.to_dict() or t.classes != classes:
            raise SystemExit(f"--kd-teacher {cfg.kd_teacher}: its classes or preprocessing differ from this dataset's")
        teacher = t.model.eval()

    start_epoch, step, best, history = 0, 0, {"val_top1": -1.0, "epoch": 0}, []
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(optimizer_state_from_file(resume_state["optimizer"]))
        scaler.load_state_dict(resume_state["scaler"])
        if ema is not None:
            ema.load_state_dict(resume_state["ema"])
        start_epoch, step, best = resume_state["epoch"], resume_state["step"], resume_state["best"]
        history = resume_state["history"]
        set_rng_state(resume_state["rng"])
        if info.is_main:
            log.info("resumed from %s at epoch %d (step %d)", out / "last.pt", start_epoch, step)

    ddp_model = DistributedDataParallel(model) if info.world_size > 1 else model
    train_loader, val_loader = make_loaders(data, cfg, info)
    steps_per_epoch = (
        len(train_loader) if not cfg.max_steps_per_epoch else min(len(train_loader), cfg.max_steps_per_epoch)
    )
    sched = dict(
        total_steps=cfg.epochs * steps_per_epoch,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        steps_per_epoch=steps_per_epoch,
        schedule=cfg.schedule,
        min_ratio=cfg.min_lr_ratio,
        milestones=cfg.step_milestones,
        gamma=cfg.step_gamma,
    )
    versions = {
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }
    metrics: dict[str, Any] = {}
    t_run = time.perf_counter()

    for epoch in range(start_epoch, cfg.epochs):
        seed_everything(cfg.seed + 1000 * epoch + info.rank)  # resumed and uninterrupted runs draw the same numbers
        train_loader.sampler.set_epoch(epoch)
        set_train_mode(ddp_model)
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0.0
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            leave=False,
            disable=not (info.is_main and cfg.progress),
            dynamic_ncols=True,
            file=sys.stderr,
        )
        for i, (x, y) in enumerate(train_loader):
            if i >= steps_per_epoch:
                break
            if len(y) == 0:  # every image of this batch failed to decode (each was reported)
                continue
            x, y = x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)
            if cfg.train_crop == "pad":
                x = pad_crop_flip(x, cfg.pad, cfg.hflip)
            x = normalize(x, spec)
            if cfg.cutout:
                x = cutout(x, cfg.cutout)
            if cfg.random_erasing:
                x = random_erasing(x, cfg.random_erasing)
            target = one_hot_smooth(y, len(classes), cfg.label_smoothing)
            x, target = mix_batch(
                x, target, mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, ricap_beta=cfg.ricap, prob=cfg.mix_prob
            )
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            factor = lr_factor(step, **sched)
            for g in optimizer.param_groups:
                g["lr"] = peak_lr * g["lr_mult"] * factor
            with autocast(cfg, info.device):
                logits = ddp_model(x)
                if teacher is not None:
                    with torch.no_grad():
                        t_logits = teacher(x)
                    loss = kd_loss(logits, t_logits, target, alpha=cfg.kd_alpha, temperature=cfg.kd_temperature)
                else:
                    loss = soft_cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update(model)
            step += 1
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == target.argmax(1)).sum().item()
            bar.update()
            bar.set_postfix(
                loss=f"{loss_sum / seen:.4f}",
                acc=f"{correct / seen:.4f}",
                lr=f"{optimizer.param_groups[0]['lr']:.4g}",
                img_s=f"{seen * info.world_size / (time.perf_counter() - t0):.0f}",
            )
        bar.close()
        train_time = time.perf_counter() - t0
        tr = distributed.all_reduce_sum(
            torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=info.device)
        )
        distributed.broadcast_from_main(model)  # validate (on all ranks) exactly the weights rank 0 saves
        if ema is not None:
            distributed.broadcast_from_main(ema.module)
        eval_model = ema.module if ema is not None else model
        ev = evaluate(eval_model, val_loader, info.device, len(classes), cfg.channels_last)
        confusion = ev.pop("confusion")
        row = {
            "epoch": epoch + 1,
            "train_loss": tr[0].item() / max(1, tr[2].item()),
            "train_acc": tr[1].item() / max(1, tr[2].item()),
            **ev,
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": tr[2].item() / train_time,
            "epoch_time_s": time.perf_counter() - t0,
        }
        history.append(row)
        improved = row["val_top1"] > best["val_top1"]
        if improved:
            best = {"val_top1": row["val_top1"], "val_top5": row["val_top5"], "epoch": epoch + 1}
        metrics = {
            **row,
            "best_val_top1": best["val_top1"],
            "best_epoch": best["epoch"],
            "dataset": data.name,
            "train_size": len(data.train),
            "val_size": len(data.val),
            "confusion": confusion.tolist(),
        }
        if info.is_main:
            log.info(
                "epoch %d/%d  train loss %.4f acc %.4f  val loss %.4f top1 %.4f top5 %.4f  %.0f img/s  %.0fs",
                epoch + 1,
                cfg.epochs,
                row["train_loss"],
                row["train_acc"],
                row["val_loss"],
                row["val_top1"],
                row["val_top5"],
                row["images_per_s"],
                row["epoch_time_s"],
            )
            training = {
                "config": cfg.to_dict(),
                "versions": versions,
                "world_size": info.world_size,
                "started_at": started,
                "ended_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "wall_time_s": time.perf_counter() - t_run,
                "global_batch_size": global_batch,
                "peak_lr": peak_lr,
            }
            common = dict(
                arch=cfg.arch,
                arch_kwargs=arch_kwargs,
                classes=classes,
                preprocess=spec,
                metrics=metrics,
                training=training,
            )
            resume = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "epoch": epoch + 1,
                "step": step,
                "best": best,
                "history": history,
                "rng": rng_state(),
            }
            # rewritten whole (and atomically: a kill never leaves half a line): a resumed run keeps one row per epoch
            atomic_write_bytes(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history).encode())
            if improved:
                save_checkpoint(out / "best.pt", eval_model, **common)
            save_checkpoint(out / "last.pt", eval_model, **common, extra={"resume": resume})
            plot_history(history, out)
        distributed.barrier()

    if info.is_main:
        final = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        final.pop("resume", None)
        atomic_torch_save(final, out / "model.pt")
        lrs = [peak_lr * lr_factor(s, **sched) for s in range(sched["total_steps"])]
        plot_lr(lrs, steps_per_epoch, out / "lr.png")
        log.info(
            "done: final val top1 %.4f (best %.4f at epoch %d); wrote %s",
            metrics.get("val_top1", float("nan")),
            best["val_top1"],
            best["epoch"],
            out / "model.pt",
        )
    distributed.barrier()
    distributed.cleanup()
    return metrics


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_config(argv)
    try:
        run(cfg)
    except DataError as e:  # a dataset we cannot train on: say why, without a traceback
        raise SystemExit(f"resnet-train: error: {e}") from None


if __name__ == "__main__":
    main()
