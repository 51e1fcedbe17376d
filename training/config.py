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
    val_fraction: float = 0.1  # held out of train/ for validation (Fashion-MNIST; an ImageFolder without val/)
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
    channels_last: bool | None = None  # None = on (see training/machine.py)
    compile: bool = False  # torch.compile the training forward/backward
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
    amp: str = "auto"  # auto (bf16 where the hardware has it natively) | none | bf16 | fp16
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
    tensorboard: str = ""  # write per-epoch scalars as TensorBoard events into this folder
    # the flags given on the command line (not stored; `--resume` compares them with the stored run)
    given: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("given")
        return d


CHOICES = {
    "train_crop": ("pad", "rrc"),
    "auto_augment": ("none", "autoaugment", "randaugment", "trivialaugment"),
    "optimizer": ("sgd", "adamw", "adam"),
    "lr_scaling": ("linear", "none"),
    "schedule": ("cosine", "step", "constant"),
    "amp": ("auto", "none", "bf16", "fp16"),
    "shortcut": ("default", "A", "B"),
}


# One line per flag of `resnet-train --help`, in the words a user would search for. A default that is not a plain
# value says so in words, "(default: ...)"; every other default is appended by the formatter.
HELP: dict[str, str] = {
    # data
    "data": 'what to train on: "fashion-mnist", a folder of Fashion-MNIST idx .gz files, or an ImageFolder root '
            "(train/, optional val/ and test/, one folder per class)",
    "fashion_mnist_dir": "where --data fashion-mnist finds its idx .gz files",
    "val_fraction": "part of train/ held out for validation (stratified, seeded) when there is no val/: "
                    "Fashion-MNIST, an ImageFolder without val/",
    "image_size": "crop size in pixels; 0 = the dataset's default (28 for Fashion-MNIST, 224 otherwise)",
    "resize": "shorter side before the center crop at evaluation; 0 = image size * 8/7 (the crop itself for 28 px)",
    "train_crop": "training crop: pad = zero-pad by --pad and crop at random (small images); "
                  "rrc = RandomResizedCrop (photos)",
    "pad": "padding in pixels of --train-crop pad",
    "rrc_min_scale": "smallest fraction of the image area RandomResizedCrop keeps (--train-crop rrc)",
    "hflip": "random horizontal flips of training images",
    "auto_augment": "automatic augmentation policy applied to each training image",
    "workers": "DataLoader worker processes that decode and augment training images; 0 = in the main process",
    # model
    "arch": "architecture, a registry name such as resnet20, resnet50 or resnext50_32x4d (docs/MODELS.md)",
    "small_input": "small-input stem (3x3 conv, no max-pool), true or false (default: auto, on for images <= 64 px)",
    "widths": "channels of each stage, e.g. 32 64 128 (default: the architecture's own)",
    "zero_init_residual": "start the last BatchNorm of each residual block at zero, so each block begins as identity",
    "shortcut": "shortcut of the CIFAR ResNets where the shape changes: A = zero-padding identity, B = 1x1 "
                "projections (default: default, the architecture's own, A)",
    "pretrained": "start from these torchvision-format weights (.pth or checkpoint); the classifier is replaced "
                  "for the new classes (default: none, random initialisation)",
    "freeze_backbone": "train the classifier only (fine-tuning with --pretrained)",
    # optimisation
    "epochs": "passes over the training set",
    "batch_size": "images per step and per process (the global batch is this times the number of processes)",
    "optimizer": "optimizer: SGD with momentum, AdamW (decoupled weight decay) or Adam",
    "lr": "peak learning rate; per 256 images with --lr-scaling linear (the rate used is lr * global batch / 256)",
    "lr_scaling": "linear = scale --lr by global batch / 256 (linear scaling rule); none = use --lr as given",
    "head_lr_mult": "learning-rate multiplier of the classifier layer (fc), e.g. 10 when fine-tuning",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum (SGD)",
    "weight_decay": "weight decay (L2; decoupled with --optimizer adamw)",
    "no_decay_norm_bias": "no weight decay on norm layers and biases (parameters with one dimension)",
    "schedule": "learning-rate schedule after warmup: cosine decay, step decay at --step-milestones, or constant",
    "warmup_epochs": "linear warmup from 0 to the peak learning rate, in epochs (fractions allowed)",
    "min_lr_ratio": "final learning rate of the cosine schedule, as a fraction of the peak",
    "step_milestones": "epochs at which --schedule step multiplies the learning rate by --step-gamma "
                       "(default: 15 25)",
    "step_gamma": "factor applied at each --step-milestones epoch (--schedule step)",
    "grad_clip": "clip the global L2 norm of the gradients to this; 0 = off",
    # regularisation
    "label_smoothing": "label smoothing of the cross-entropy loss; 0 = off",
    "mixup": "mixup: alpha of the Beta(alpha, alpha) mixing weight; 0 = off",
    "cutmix": "CutMix: alpha of the Beta(alpha, alpha) box area; 0 = off",
    "ricap": "RICAP: beta of the Beta(beta, beta) patch boundaries; 0 = off",
    "mix_prob": "probability that a batch is mixed (by one of the enabled mixup, CutMix, RICAP, chosen at random)",
    "cutout": "Cutout: side in pixels of a square hole cut out of each image; 0 = off",
    "random_erasing": "random erasing: probability per image of erasing a random rectangle; 0 = off",
    "ema": "exponential moving average of the weights with this decay, e.g. 0.999; validated and saved instead "
           "of the raw weights; 0 = off",
    # distillation
    "kd_teacher": "knowledge distillation from this teacher checkpoint (same classes and preprocessing) "
                  "(default: none, no distillation)",
    "kd_alpha": "weight a of the distillation term: (1 - a) cross-entropy + a T^2 KL(teacher || student)",
    "kd_temperature": "softmax temperature T of the distillation term",
    # checkpoints
    "out": "output folder: last.pt (to resume), best.pt, model.pt (what the service loads), class_indices.json, "
           "metrics.jsonl and plots",
    "resume": "continue the run in --out from its last.pt (a new run if there is none); flags that change what is "
              "learned must match the stored run",
    "tensorboard": "also write per-epoch scalars as TensorBoard events into this folder (default: none)",
    # runtime
    "device": "auto (CUDA when there is any, else the CPU), cpu, cuda or cuda:N",
    "amp": "mixed precision: auto = bf16 where the hardware has it natively, else none; fp16 with loss scaling",
    "channels_last": "channels-last memory format (faster convolutions with oneDNN and cuDNN), true or false "
                     "(default: auto, on)",
    "compile": "torch.compile the training forward and backward (slower start, faster steps)",
    "seed": "random seed of initial weights, data order, augmentation and the validation split",
    "deterministic": "deterministic algorithms only (slower; repeatable on the same machine)",
    "threads": "torch intra-op threads; 0 = torch's default",
    "progress": "progress bar on stderr",
    "max_steps_per_epoch": "end each epoch after this many steps; 0 = the whole epoch (for smoke tests)",
}

# The argument groups of `resnet-train --help`, in order; every field is in exactly one.
GROUPS: dict[str, tuple[str, ...]] = {
    "data": ("data", "fashion_mnist_dir", "val_fraction", "image_size", "resize", "train_crop", "pad",
             "rrc_min_scale", "hflip", "auto_augment", "workers"),
    "model": ("arch", "small_input", "widths", "zero_init_residual", "shortcut", "pretrained", "freeze_backbone"),
    "optimisation": ("epochs", "batch_size", "optimizer", "lr", "lr_scaling", "head_lr_mult", "momentum", "nesterov",
                     "weight_decay", "no_decay_norm_bias", "schedule", "warmup_epochs", "min_lr_ratio",
                     "step_milestones", "step_gamma", "grad_clip"),
    "regularisation": ("label_smoothing", "mixup", "cutmix", "ricap", "mix_prob", "cutout", "random_erasing", "ema"),
    "distillation": ("kd_teacher", "kd_alpha", "kd_temperature"),
    "checkpoints": ("out", "resume", "tensorboard"),
    "runtime": ("device", "amp", "channels_last", "compile", "seed", "deterministic", "threads", "progress",
                "max_steps_per_epoch"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to every option's help, unless the help already says its default in words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "(default:" in text else super()._get_help_string(action)


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def _add_bool(group: argparse._ArgumentGroup, name: str, default: Any) -> None:
    """`--x` / `--no-x`; a name that is already negative (`no_x`) gets `--no-x` and `--x`, never `--no-no-x`."""
    flag = name.replace("_", "-")
    if not name.startswith("no_"):
        group.add_argument("--" + flag, action=argparse.BooleanOptionalAction, default=default, help=HELP[name])
        return
    group.add_argument("--" + flag, dest=name, action="store_true", default=default, help=HELP[name])
    group.add_argument("--" + flag.removeprefix("no-"), dest=name, action="store_false", default=argparse.SUPPRESS,
                       help=f"the opposite of --{flag} (default: off)")


def _add_field(group: argparse._ArgumentGroup, f: dataclasses.Field, suppress_default: bool) -> None:
    flag, text = "--" + f.name.replace("_", "-"), HELP[f.name]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    if suppress_default:
        default = argparse.SUPPRESS
    if f.type in ("bool", bool):
        _add_bool(group, f.name, default)
    elif f.type in ("bool | None",):
        group.add_argument(flag, type=_parse_bool, nargs="?", const=True, default=default, metavar="BOOL", help=text)
    elif f.type in ("list[int]",):
        group.add_argument(flag, type=int, nargs="+", default=default, metavar="N", help=text)
    else:
        typ = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
        group.add_argument(flag, type=typ, default=default, choices=CHOICES.get(f.name), help=text)


def build_parser(prog: str = "resnet-train", *, suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """Every field of `TrainConfig` becomes `--field-name` in its group of `GROUPS`; booleans also get
    `--no-field-name` (a field named `no_x` gets `--x` instead).

    With `suppress_defaults`, flags not on the command line are left out of the result (to tell which were given).
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name != "given"}
    grouped = [name for names in GROUPS.values() for name in names]
    if sorted(grouped) != sorted(fields):  # a new field needs a group and a help line, or it would be no flag
        raise RuntimeError(f"GROUPS and TrainConfig disagree: {sorted(set(grouped) ^ set(fields))}")
    parser = argparse.ArgumentParser(prog=prog, description="Train a ResNet and write a checkpoint the service reads.",
                                     epilog="Boolean flags come in pairs: --hflip / --no-hflip, --no-decay-norm-bias / "
                                            "--decay-norm-bias. Every flag is recorded in the checkpoint; --resume "
                                            "refuses flags that change what is learned.",
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    for title, names in GROUPS.items():
        group = parser.add_argument_group(title)
        for name in names:
            _add_field(group, fields[name], suppress_defaults)
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    given = frozenset(vars(build_parser(suppress_defaults=True).parse_args(argv)))
    return TrainConfig(**vars(args), given=given)


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a config stored in a checkpoint, ignoring keys this version no longer knows."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"given"}
    return TrainConfig(**{k: v for k, v in d.items() if k in names})


__all__ = ["GROUPS", "HELP", "HelpFormatter", "TrainConfig", "build_parser", "config_from_dict", "parse_config"]
