"""One screen of defaults, overridden by flags; unknown or mistyped flags are refused."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    # data
    data: str = "fashion-mnist"  # "fashion-mnist", a folder of idx .gz files, or an ImageFolder root
    fashion_mnist_dir: str = "/usr/share/datasets/fashion-mnist"
    val_fraction: float = 0.1  # used only when an ImageFolder root has no val/
    image_size: int = 0  # crop size; 0 = the dataset's default (28 for Fashion-MNIST, 224 otherwise)
    resize: int = 0  # shorter side before the center crop at evaluation; 0 = image_size * 8/7 (= crop for 28 px)
    train_crop: str = "pad"  # "pad" (pad + random crop, small images) or "rrc" (RandomResizedCrop)
    pad: int = 2
    rrc_min_scale: float = 0.08
    hflip: bool = True
    auto_augment: str = "none"  # none | autoaugment | randaugment | trivialaugment
    workers: int = 2
    # model
    arch: str = "resnet20"
    small_input: bool | None = None  # None = on for images <= 64 px
    widths: list[int] = field(default_factory=list)  # channels of each stage; empty = the architecture's own
    zero_init_residual: bool = False
    shortcut: str = "default"  # CIFAR nets: A (zero-padding identity, the default) or B (1x1 projections)
    pretrained: str = ""  # torchvision-format weights; the classifier is replaced for the new classes
    freeze_backbone: bool = False
    head_lr_mult: float = 1.0
    channels_last: bool = False
    # optimisation
    epochs: int = 30
    batch_size: int = 128  # per process
    optimizer: str = "sgd"  # sgd | adamw | adam
    lr: float = 0.2  # per 256 images when lr_scaling is "linear"
    lr_scaling: str = "linear"  # linear | none
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    no_decay_norm_bias: bool = True
    schedule: str = "cosine"  # cosine | step | constant
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.0
    step_milestones: list[int] = field(default_factory=lambda: [15, 25])
    step_gamma: float = 0.1
    grad_clip: float = 0.0
    amp: str = "none"  # none | bf16 | fp16
    # regularisation tricks
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(a, a); 0 = off
    cutmix: float = 0.0
    ricap: float = 0.0
    mix_prob: float = 1.0
    cutout: int = 0  # side of the square hole in pixels; 0 = off
    random_erasing: float = 0.0  # probability
    ema: float = 0.0  # decay, e.g. 0.999; 0 = off
    kd_teacher: str = ""
    kd_alpha: float = 0.5
    kd_temperature: float = 4.0
    # run
    out: str = "runs/latest"
    resume: bool = False
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    progress: bool = True
    max_steps_per_epoch: int = 0  # 0 = whole epoch (for smoke tests)
    threads: int = 0  # torch intra-op threads; 0 = torch default

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES = {
    "train_crop": ("pad", "rrc"),
    "auto_augment": ("none", "autoaugment", "randaugment", "trivialaugment"),
    "optimizer": ("sgd", "adamw", "adam"),
    "lr_scaling": ("linear", "none"),
    "schedule": ("cosine", "step", "constant"),
    "amp": ("none", "bf16", "fp16"),
    "shortcut": ("default", "A", "B"),
}


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def build_parser(prog: str = "resnet-train") -> argparse.ArgumentParser:
    """Every field of `TrainConfig` becomes `--field-name`; booleans also get `--no-field-name`."""
    parser = argparse.ArgumentParser(prog=prog, description="Train a ResNet and write a checkpoint the service reads.",
                                     allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif f.type in ("bool | None",):
            parser.add_argument(flag, type=_parse_bool, default=default, metavar="BOOL")
        elif f.type in ("list[int]",):
            parser.add_argument(flag, type=int, nargs="+", default=default)
        else:
            typ = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            parser.add_argument(flag, type=typ, default=default, choices=CHOICES.get(f.name))
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    return TrainConfig(**vars(args))


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a config stored in a checkpoint, ignoring keys this version no longer knows."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in names})


__all__ = ["TrainConfig", "build_parser", "config_from_dict", "parse_config"]
