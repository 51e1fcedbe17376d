"""What the model manager loads (`ModelSource`: a checkpoint and how to read it) and what it gets back
(`LoadedModel`: the checkpoint and the backend that runs it). Shared by the manager and the workers package."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.core.errors import ForbiddenPathError
from models import CLASS_INDEX_NAME, Checkpoint, CheckpointError
from models.backends import InferenceBackend


@dataclass(frozen=True)
class LoadedModel:
    """One servable model. Requests hold a reference, so a reload never changes a model under them."""

    checkpoint: Checkpoint  # its torch model also serves the feature maps, whatever the backend
    backend: InferenceBackend
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def feature_layers(self) -> list[str]:
        return list(getattr(self.checkpoint.model, "feature_layers", []))


def _beside(checkpoint: Path) -> Path | None:
    try:
        index = checkpoint.with_name(CLASS_INDEX_NAME)
        return index if index.is_file() else None
    except (OSError, ValueError):  # "/", "..", names too long: no usable neighbour; loading will say why
        return None


def refuse_special_file(path: Path | None) -> None:
    """Only regular files are read: /dev/zero or a FIFO given to reload would be read forever or block."""
    try:
        mode = path.stat().st_mode if path is not None else None
    except (OSError, ValueError):  # missing or unreadable: the loader names the problem
        return
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise CheckpointError(f"{path}: not a regular file")


@dataclass(frozen=True)
class ModelSource:
    """What to load: a checkpoint file, its class index and, for a bare state dict, how to build and feed it."""

    checkpoint: Path
    class_index: Path | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] | None = None
    preprocess: dict[str, Any] | None = None


def configured_source(settings: Settings) -> ModelSource:
    """RESNET_CHECKPOINT with RESNET_CLASS_INDEX (else class_indices.json beside it, if present), RESNET_ARCH,
    RESNET_ARCH_KWARGS and RESNET_PREPROCESS."""
    return ModelSource(settings.checkpoint, settings.class_index or _beside(settings.checkpoint), settings.arch,
                       settings.arch_kwargs, settings.preprocess)


def requested_source(settings: Settings, checkpoint: str | None, class_index: str | None, arch: str | None = None,
                     arch_kwargs: dict[str, Any] | None = None,
                     preprocess: dict[str, Any] | None = None) -> ModelSource:
    """A reload request's source, confined to RESNET_MODEL_DIR (relative paths are taken inside it).

    Anything that resolves (symlinks and `..` included) outside the folder is a `ForbiddenPathError` raised
    before the file is touched, so the answer tells nothing about it. Unset fields are the configured ones.
    """
    base = configured_source(settings)
    root = settings.resolved_model_dir
    path = _inside(root, checkpoint) if checkpoint else base.checkpoint
    index = _inside(root, class_index) if class_index else (base.class_index if not checkpoint else _beside(path))
    return ModelSource(path, index, arch or base.arch, arch_kwargs if arch_kwargs is not None else base.arch_kwargs,
                       preprocess if preprocess is not None else base.preprocess)


def _inside(root: Path, name: str) -> Path:
    try:
        path = (root / name).resolve()  # an absolute `name` replaces `root`
    except (OSError, ValueError, RuntimeError):  # symlink loops, NUL bytes: refused like any other outside path
        raise ForbiddenPathError("outside the model folder") from None
    if not path.is_relative_to(root):
        raise ForbiddenPathError("outside the model folder")
    return path
