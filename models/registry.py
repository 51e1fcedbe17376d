"""Model registry: builders register themselves by name; callers use `create_model` and `list_models`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

Builder = Callable[..., nn.Module]
F = TypeVar("F", bound=Builder)

_REGISTRY: dict[str, Builder] = {}


def register_model(fn: F) -> F:
    """Register `fn` under its own name; duplicate names are a programming error."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


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
    """The evaluation preprocessing an architecture expects when a checkpoint does not say (bare weights)."""
    from models.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

    in_channels = int(kwargs.get("in_channels", 3))
    small = bool(kwargs.get("small_input", name in _SMALL_INPUT_DEFAULT))
    size = (32, 32) if small else (256, 224)
    if in_channels == 1:
        return PreprocessSpec(resize=size[0], crop=size[1], mean=(0.5,), std=(0.5,), color_mode="L")
    return PreprocessSpec(resize=size[0], crop=size[1], mean=IMAGENET_MEAN, std=IMAGENET_STD)


_SMALL_INPUT_DEFAULT = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}
