"""One screen of defaults, overridden by flags; unknown or mistyped flags are refused.

Each field of `TrainConfig` is declared once, with its argparse group and help text in its metadata (`flag`);
the parser, its groups (in field order) and `--help` derive from the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from models.cli import HelpFormatter, non_negative_int, parse_bool, positive_int


def flag(group: str, default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A `TrainConfig` field: its default, and the `--help` group, text and choices of its flag."""
    meta = {"group": group, "help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # A default that is not a plain value says so in words, "(default: ...)"; the formatter appends every other.
    data: str = flag("data", "fashion-mnist", 'what to train on: "fashion-mnist", a folder of Fashion-MNIST idx .gz '
                     "files, or an ImageFolder root (train/, optional val/ and test/, one folder per class)")
    fashion_mnist_dir: str = flag("data", "/usr/share/datasets/fashion-mnist",
                                  "where --data fashion-mnist finds its idx .gz files")
    val_fraction: float = flag("data", 0.1, "part of train/ held out for validation (stratified, seeded) when there "
                               "is no val/: Fashion-MNIST, an ImageFolder without val/")
    image_size: int = flag("data", 0, "crop size in pixels; 0 = the dataset's default (28 for Fashion-MNIST, 224 "
                           "otherwise)")
    resize: int = flag("data", 0, "shorter side before the center crop at evaluation; 0 = image size * 8/7 (the crop "
                       "itself for 28 px)")
    train_crop: str = flag("data", "pad", "training crop: pad = zero-pad by --pad and crop at random (small images); "
                           "rrc = RandomResizedCrop (photos)", ("pad", "rrc"))
    pad: int = flag("data", 2, "padding in pixels of --train-crop pad")
    rrc_min_scale: float = flag("data", 0.08, "smallest fraction of the image area RandomResizedCrop keeps "
                                "(--train-crop rrc)")
    hflip: bool = flag("data", True, "random horizontal flips of training images")
    auto_augment: str = flag("data", "none", "automatic augmentation policy applied to each training image",
                             ("none", "autoaugment", "randaugment", "trivialaugment"))
    workers: int = flag("data", 2, "DataLoader worker processes that decode and augment training images; 0 = in the "
                        "main process")

    arch: str = flag("model", "resnet20", "architecture, a registry name such as resnet20, resnet50 or "
                     "resnext50_32x4d (docs/MODELS.md)")
    small_input: bool | None = flag("model", None, "small-input stem (3x3 conv, no max-pool), true or false "
                                    "(default: auto, on for images <= 64 px)")
    widths: list[int] = flag(  # noqa: RUF009 (`flag` makes a list default a default_factory)
        "model", [], "channels of each stage, e.g. 32 64 128 (default: the architecture's own)")
    zero_init_residual: bool = flag("model", False, "start the last BatchNorm of each residual block at zero, so "
                                    "each block begins as identity")
    shortcut: str = flag("model", "default", "shortcut of the CIFAR ResNets where the shape changes: A = "
                         "zero-padding identity, B = 1x1 projections (default: default, the architecture's own, A)",
                         ("default", "A", "B"))
    pretrained: str = flag("model", "", "start from these torchvision-format weights (.pth or checkpoint); the "
                           "classifier is replaced for the new classes (default: none, random initialisation)")
    freeze_backbone: bool = flag("model", False, "train the classifier only (fine-tuning with --pretrained)")

    epochs: int = flag("optimisation", 30, "passes over the training set")
    batch_size: int = flag("optimisation", 128, "images per step and per process (the global batch is this times "
                           "the number of processes)")
    optimizer: str = flag("optimisation", "sgd", "optimizer: SGD with momentum, AdamW (decoupled weight decay) or "
                          "Adam", ("sgd", "adamw", "adam"))
    lr: float = flag("optimisation", 0.2, "peak learning rate; per 256 images with --lr-scaling linear (the rate "
                     "used is lr * global batch / 256)")
    lr_scaling: str = flag("optimisation", "linear", "linear = scale --lr by global batch / 256 (linear scaling "
                           "rule); none = use --lr as given", ("linear", "none"))
    head_lr_mult: float = flag("optimisation", 1.0, "learning-rate multiplier of the classifier layer (fc), e.g. 10 "
                               "when fine-tuning")
    momentum: float = flag("optimisation", 0.9, "SGD momentum")
    nesterov: bool = flag("optimisation", True, "Nesterov momentum (SGD)")
    weight_decay: float = flag("optimisation", 5e-4, "weight decay (L2; decoupled with --optimizer adamw)")
    no_decay_norm_bias: bool = flag("optimisation", True, "no weight decay on norm layers and biases (parameters "
                                    "with one dimension)")
    schedule: str = flag("optimisation", "cosine", "learning-rate schedule after warmup: cosine decay, step decay at "
                         "--step-milestones, or constant", ("cosine", "step", "constant"))
    warmup_epochs: float = flag("optimisation", 1.0, "linear warmup from 0 to the peak learning rate, in epochs "
                                "(fractions allowed)")
    min_lr_ratio: float = flag("optimisation", 0.0, "final learning rate of the cosine schedule, as a fraction of "
                               "the peak")
    step_milestones: list[int] = flag(  # noqa: RUF009 (a default_factory, as for widths)
        "optimisation", [15, 25], "epochs at which --schedule step multiplies the learning rate by --step-gamma "
        "(default: 15 25)")
    step_gamma: float = flag("optimisation", 0.1, "factor applied at each --step-milestones epoch (--schedule step)")
    grad_clip: float = flag("optimisation", 0.0, "clip the global L2 norm of the gradients to this; 0 = off")

    label_smoothing: float = flag("regularisation", 0.0, "label smoothing of the cross-entropy loss; 0 = off")
    mixup: float = flag("regularisation", 0.0, "mixup: alpha of the Beta(alpha, alpha) mixing weight; 0 = off")
    cutmix: float = flag("regularisation", 0.0, "CutMix: alpha of the Beta(alpha, alpha) box area; 0 = off")
    ricap: float = flag("regularisation", 0.0, "RICAP: beta of the Beta(beta, beta) patch boundaries; 0 = off")
    mix_prob: float = flag("regularisation", 1.0, "probability that a batch is mixed (by one of the enabled mixup, "
                           "CutMix, RICAP, chosen at random)")
    cutout: int = flag("regularisation", 0, "Cutout: side in pixels of a square hole cut out of each image; 0 = off")
    random_erasing: float = flag("regularisation", 0.0, "random erasing: probability per image of erasing a random "
                                 "rectangle; 0 = off")
    ema: float = flag("regularisation", 0.0, "exponential moving average of the weights with this decay, e.g. 0.999; "
                      "validated and saved instead of the raw weights; 0 = off")

    kd_teacher: str = flag("distillation", "", "knowledge distillation from this teacher checkpoint (same classes "
                           "and preprocessing) (default: none, no distillation)")
    kd_alpha: float = flag("distillation", 0.5, "weight a of the distillation term: (1 - a) cross-entropy + a T^2 "
                           "KL(teacher || student)")
    kd_temperature: float = flag("distillation", 4.0, "softmax temperature T of the distillation term")

    out: str = flag("checkpoints", "runs/latest", "output folder: last.pt (to resume), best.pt, model.pt (what the "
                    "service loads), class_indices.json, metrics.jsonl and plots")
    resume: bool = flag("checkpoints", False, "continue the run in --out from its last.pt (a new run if there is "
                        "none); flags that change what is learned must match the stored run")
    tensorboard: str = flag("checkpoints", "", "also write per-epoch scalars as TensorBoard events into this folder "
                            "(default: none)")

    device: str = flag("runtime", "auto", "auto (CUDA when there is any, else the CPU), cpu, cuda or cuda:N")
    amp: str = flag("runtime", "auto", "mixed precision: auto = bf16 where the hardware has it natively, else none; "
                    "fp16 with loss scaling", ("auto", "none", "bf16", "fp16"))
    channels_last: bool | None = flag("runtime", None, "channels-last memory format (faster convolutions with oneDNN "
                                      "and cuDNN), true or false (default: auto, on)")
    compile: bool = flag("runtime", False, "torch.compile the training forward and backward (slower start, faster "
                         "steps)")
    seed: int = flag("runtime", 0, "random seed of initial weights, data order, augmentation and the validation split")
    deterministic: bool = flag("runtime", False, "deterministic algorithms only (slower; repeatable on the same "
                               "machine)")
    threads: int = flag("runtime", 0, "torch intra-op threads; 0 = torch's default")
    progress: bool = flag("runtime", True, "progress bar on stderr")
    max_steps_per_epoch: int = flag("runtime", 0, "end each epoch after this many steps; 0 = the whole epoch (for "
                                    "smoke tests)")

    # the flags given on the command line (not stored; `--resume` compares them with the stored run)
    given: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("given")
        return d


def flag_fields() -> list[dataclasses.Field]:
    """The fields of `TrainConfig` that are flags (all but `given`), in declaration order."""
    return [f for f in dataclasses.fields(TrainConfig) if "group" in f.metadata]


HELP: dict[str, str] = {f.name: f.metadata["help"] for f in flag_fields()}
GROUPS: dict[str, tuple[str, ...]] = {}  # group title -> its fields, in the order of `--help`
for _f in flag_fields():
    GROUPS[_f.metadata["group"]] = (*GROUPS.get(_f.metadata["group"], ()), _f.name)


def _add_bool(group: argparse._ArgumentGroup, name: str, default: Any, text: str) -> None:
    """`--x` / `--no-x`; a name that is already negative (`no_x`) gets `--no-x` and `--x`, never `--no-no-x`."""
    opt = name.replace("_", "-")
    if not name.startswith("no_"):
        group.add_argument("--" + opt, action=argparse.BooleanOptionalAction, default=default, help=text)
        return
    group.add_argument("--" + opt, dest=name, action="store_true", default=default, help=text)
    group.add_argument("--" + opt.removeprefix("no-"), dest=name, action="store_false", default=argparse.SUPPRESS,
                       help=f"the opposite of --{opt} (default: off)")


def _add_field(group: argparse._ArgumentGroup, f: dataclasses.Field, suppress_default: bool) -> None:
    opt, text = "--" + f.name.replace("_", "-"), f.metadata["help"]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    if suppress_default:
        default = argparse.SUPPRESS
    if f.type in ("bool", bool):
        _add_bool(group, f.name, default, text)
    elif f.type in ("bool | None",):
        group.add_argument(opt, type=parse_bool, nargs="?", const=True, default=default, metavar="BOOL", help=text)
    elif f.type in ("list[int]",):
        group.add_argument(opt, type=int, nargs="+", default=default, metavar="N", help=text)
    else:
        typ = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
        group.add_argument(opt, type=typ, default=default, choices=f.metadata["choices"], help=text)


def build_parser(prog: str = "resnet-train", *, suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """Every field of `TrainConfig` becomes `--field-name` in its group; booleans also get `--no-field-name`
    (a field named `no_x` gets `--x` instead).

    With `suppress_defaults`, flags not on the command line are left out of the result (to tell which were given).
    """
    parser = argparse.ArgumentParser(prog=prog, description="Train a ResNet and write a checkpoint the service reads.",
                                     epilog="Boolean flags come in pairs: --hflip / --no-hflip, --no-decay-norm-bias / "
                                            "--decay-norm-bias. Every flag is recorded in the checkpoint; --resume "
                                            "refuses flags that change what is learned.",
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    groups = {title: parser.add_argument_group(title) for title in GROUPS}
    for f in flag_fields():
        _add_field(groups[f.metadata["group"]], f, suppress_defaults)
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    given = frozenset(vars(build_parser(suppress_defaults=True).parse_args(argv)))
    return TrainConfig(**vars(args), given=given)


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a config stored in a checkpoint, ignoring keys this version no longer knows."""
    names = {f.name for f in flag_fields()}
    return TrainConfig(**{k: v for k, v in d.items() if k in names})


__all__ = ["GROUPS", "HELP", "HelpFormatter", "TrainConfig", "build_parser", "config_from_dict", "flag",
           "non_negative_int", "parse_config", "positive_int"]
