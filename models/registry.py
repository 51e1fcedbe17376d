"""Model registry: builders register themselves by name; callers use `create_model` and `list_models`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, overload

from torch import nn

Builder = Callable[..., nn.Module]
F = TypeVar("F", bound=Builder)



@dataclass(frozen=True)
class ModelDefaults:
    """What an architecture expects when a checkpoint does not say (timm's `default_cfg` idea), set at registration."""

    resize: int = 256  # shorter side before the centre crop
    crop: int = 224
    small_input: bool = False  # the 3x3 stride-1 stem of the CIFAR nets, no max-pool


IMAGENET = ModelDefaults()
CIFAR = ModelDefaults(resize=32, crop=32, small_input=True)

_REGISTRY: dict[str, Builder] = {}
_DEFAULTS: dict[str, ModelDefaults] = {}


@overload
def register_model(fn: F) -> F: ...
@overload
def register_model(*, defaults: ModelDefaults) -> Callable[[F], F]: ...
def register_model(fn: F | None = None, *, defaults: ModelDefaults = IMAGENET):
    """Register a builder under its own name, with its `defaults` (`@register_model` or
    `@register_model(defaults=CIFAR)`); duplicate names are a programming error."""

    def register(builder: F) -> F:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name], _DEFAULTS[name] = builder, defaults
        return builder

    return register(fn) if fn is not None else register


def model_defaults(name: str) -> ModelDefaults:
    """The defaults `name` was registered with; unknown names raise `ValueError` listing the known ones."""
    if name not in _DEFAULTS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(list_models())}")
    return _DEFAULTS[name]


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int | None = None, **kwargs) -> nn.Module:
    """Build architecture `name` with `num_classes` outputs (default: the architecture's own, 1000 or 10).

    Unknown names raise `ValueError` listing the known ones.
    """
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(list_models())}") from None
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return builder(**kwargs)


def default_preprocess(name: str, **kwargs):
    """The evaluation preprocessing an architecture expects when a checkpoint does not say (bare weights).

    Sizes come from the builder's registered defaults; `small_input` given against them picks the other family's.
    """
    from models.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

    defaults = model_defaults(name)
    small = bool(kwargs.get("small_input", defaults.small_input))
    if small != defaults.small_input:
        defaults = CIFAR if small else IMAGENET
    if int(kwargs.get("in_channels", 3)) == 1:
        return PreprocessSpec(resize=defaults.resize, crop=defaults.crop, mean=(0.5,), std=(0.5,), color_mode="L")
    return PreprocessSpec(resize=defaults.resize, crop=defaults.crop, mean=IMAGENET_MEAN, std=IMAGENET_STD)
