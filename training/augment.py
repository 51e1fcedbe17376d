"""The training tricks, as small functions the loop calls.

Per-sample transforms run in DataLoader workers on uint8 tensors; batch transforms run in the loop on
normalized tensors. Mixing tricks return soft targets (rows sum to 1) consumed by `soft_cross_entropy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from models.preprocess import PreprocessSpec, normalize
from training.config import TrainConfig


class SampleTransform:
    """Per-sample augmentation of a uint8 (C, H, W) tensor; `needs_center_crop` when it expects eval-size input."""

    def __init__(self, transforms: list, needs_center_crop: bool) -> None:
        self.compose = v2.Compose(transforms)
        self.needs_center_crop = needs_center_crop

    def __call__(self, x: Tensor) -> Tensor:
        return self.compose(x)


def build_sample_transform(train_crop: str, crop: int, *, hflip: bool, auto_augment: str,
                           rrc_min_scale: float = 0.08) -> SampleTransform | None:
    """RandomResizedCrop (+ flip) here for "rrc"; "pad" crops and flips are done per batch in `pad_crop_flip`."""
    ts: list = []
    if train_crop == "rrc":
        ts += [v2.RandomResizedCrop(crop, scale=(rrc_min_scale, 1.0), antialias=True)]
        if hflip:
            ts.append(v2.RandomHorizontalFlip())
    policy = {
        "autoaugment": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
        "randaugment": lambda: v2.RandAugment(),
        "trivialaugment": lambda: v2.TrivialAugmentWide(),
    }.get(auto_augment)
    if policy:
        ts.append(policy())
    return SampleTransform(ts, needs_center_crop=train_crop != "rrc") if ts else None


def pad_crop_flip(x: Tensor, pad: int, hflip: bool, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad by `pad`, take a random crop of the original size per image, and flip half of them."""
    n, c, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        cols = (ox[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        x = padded[batch, torch.arange(c, device=x.device).view(1, c, 1, 1), rows, cols]  # one gather, no loop
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
    return x


def one_hot_smooth(y: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    """Targets as distributions: (1 - eps) on the label plus eps / K everywhere (as `F.cross_entropy`)."""
    t = F.one_hot(y, num_classes).float()
    return t * (1.0 - smoothing) + smoothing / num_classes


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of -sum(target * log_softmax(logits))."""
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def _rand_box(h: int, w: int, lam: float) -> tuple[int, int, int, int]:
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = torch.randint(h, ()).item(), torch.randint(w, ()).item()
    return max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)


def mixup(x: Tensor, t: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Zhang et al. 2018: convex combination of two images and of their targets, lam ~ Beta(a, a)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.size(0), device=x.device)
    return lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm]


def cutmix(x: Tensor, t: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Yun et al. 2019: paste a box from another image; targets weighted by the pasted area."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.size(0), device=x.device)
    h, w = x.shape[-2:]
    y0, y1, x0, x1 = _rand_box(h, w, lam)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return x, lam * t + (1 - lam) * t[perm]


def ricap(x: Tensor, t: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """Takahashi et al. 2018: four crops from four shuffled batches tile the image; targets by area."""
    n, _, h, w = x.shape
    dist = torch.distributions.Beta(beta, beta)
    bh, bw = round(h * float(dist.sample())), round(w * float(dist.sample()))
    sizes = [(bh, bw), (bh, w - bw), (h - bh, bw), (h - bh, w - bw)]
    corners = [(0, 0), (0, bw), (bh, 0), (bh, bw)]
    out, target = torch.empty_like(x), torch.zeros_like(t)
    for (ph, pw), (cy, cx) in zip(sizes, corners, strict=True):
        if ph == 0 or pw == 0:
            continue
        perm = torch.randperm(n, device=x.device)
        sy, sx = torch.randint(0, h - ph + 1, ()).item(), torch.randint(0, w - pw + 1, ()).item()
        out[:, :, cy : cy + ph, cx : cx + pw] = x[perm, :, sy : sy + ph, sx : sx + pw]
        target += (ph * pw) / (h * w) * t[perm]
    return out, target


def cutout(x: Tensor, size: int) -> Tensor:
    """DeVries & Taylor 2017: zero one `size` x `size` square per image, centred anywhere, clipped at the edges."""
    n, _, h, w = x.shape
    y0 = torch.randint(h, (n, 1, 1), device=x.device) - size // 2
    x0 = torch.randint(w, (n, 1, 1), device=x.device) - size // 2
    ys, xs = torch.arange(h, device=x.device).view(1, h, 1), torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= y0) & (ys < y0 + size) & (xs >= x0) & (xs < x0 + size)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def random_erasing(x: Tensor, p: float, scale: tuple[float, float] = (0.02, 0.33),
                   ratio: tuple[float, float] = (0.3, 3.3), attempts: int = 10) -> Tensor:
    """Zhong et al. 2020: with probability p, replace a random rectangle with N(0, 1) values (per image).

    The rectangle is drawn as torchvision's `RandomErasing(value="random")` draws it (area fraction in `scale`,
    log-uniform aspect ratio in `ratio`, the first of `attempts` draws that fits), for the whole batch at once.
    """
    n, _, h, w = x.shape
    if p <= 0:
        return x
    dev = x.device
    area = h * w * torch.empty(n, attempts, device=dev).uniform_(*scale)
    aspect = torch.exp(torch.empty(n, attempts, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    eh, ew = torch.sqrt(area * aspect).round().long(), torch.sqrt(area / aspect).round().long()
    fits = (eh < h) & (ew < w)
    first = fits.float().argmax(1, keepdim=True)  # the first attempt that fits (if any does)
    eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
    apply = fits.any(1) & (torch.rand(n, device=dev) < p)
    y0 = (torch.rand(n, device=dev) * (h - eh + 1)).long()
    x0 = (torch.rand(n, device=dev) * (w - ew + 1)).long()
    ys, xs = torch.arange(h, device=dev).view(1, h, 1), torch.arange(w, device=dev).view(1, 1, w)
    inside = ((ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1))
              & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + ew).view(n, 1, 1)) & apply.view(n, 1, 1))
    return torch.where(inside.unsqueeze(1), torch.randn_like(x), x)


def mix_batch(x: Tensor, t: Tensor, *, mixup_alpha: float, cutmix_alpha: float, ricap_beta: float,
              prob: float) -> tuple[Tensor, Tensor]:
    """Apply one of the enabled mixing tricks (chosen uniformly) with probability `prob`."""
    options = [(fn, a) for fn, a in ((mixup, mixup_alpha), (cutmix, cutmix_alpha), (ricap, ricap_beta)) if a > 0]
    if not options or torch.rand(()).item() >= prob:
        return x, t
    fn, a = options[int(torch.randint(len(options), ()).item())]
    return fn(x, t, a)


def kd_loss(student: Tensor, teacher: Tensor, target: Tensor, *, alpha: float, temperature: float) -> Tensor:
    """Hinton et al. 2015, student logits s, teacher logits t: (1 - a) CE(target, softmax s) + a T^2 KL(pt || ps).

    pt = softmax(t / T), ps = softmax(s / T); the KL divergence is averaged over the batch.
    """
    T = temperature
    kl = F.kl_div(F.log_softmax(student.float() / T, -1), F.log_softmax(teacher.float() / T, -1),
                  reduction="batchmean", log_target=True)
    return (1 - alpha) * soft_cross_entropy(student, target) + alpha * T * T * kl


Criterion = Callable[[Tensor, Tensor, Tensor], Tensor]  # (logits, soft targets, inputs) -> loss


def build_criterion(teacher: torch.nn.Module | None, *, alpha: float, temperature: float) -> Criterion:
    """Soft-target cross-entropy, or distillation from `teacher` run (without gradients) on the same inputs."""
    if teacher is None:
        return lambda logits, target, x: soft_cross_entropy(logits, target)

    def distillation(logits: Tensor, target: Tensor, x: Tensor) -> Tensor:
        with torch.no_grad():
            t_logits = teacher(x)
        return kd_loss(logits, t_logits, target, alpha=alpha, temperature=temperature)

    return distillation


@dataclass(frozen=True)
class BatchAugment:
    """The on-device part of augmentation: crop, normalise, Cutout, erasing, label smoothing and batch mixing."""

    cfg: TrainConfig
    spec: PreprocessSpec
    num_classes: int

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The batch ready for the model, and its soft targets."""
        cfg = self.cfg
        if cfg.train_crop == "pad":
            x = pad_crop_flip(x, cfg.pad, cfg.hflip)
        x = normalize(x, self.spec)
        if cfg.cutout:
            x = cutout(x, cfg.cutout)
        if cfg.random_erasing:
            x = random_erasing(x, cfg.random_erasing)
        target = one_hot_smooth(y, self.num_classes, cfg.label_smoothing)
        x, target = mix_batch(x, target, mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, ricap_beta=cfg.ricap,
                              prob=cfg.mix_prob)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, target
