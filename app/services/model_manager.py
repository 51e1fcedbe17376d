"""Loads checkpoints onto the device, warms them up, and swaps them in atomically on reload."""

from __future__ import annotations

import asyncio
import logging
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from app.backends import build_backend
from app.backends.base import InferenceBackend
from app.core.config import Settings
from app.core.errors import ServiceConfigError
from app.core.metrics import ServiceMetrics
from models import CLASS_INDEX_NAME, Checkpoint, CheckpointError, ResNetServiceError, load_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One servable model. Requests hold a reference, so a reload never changes a model under them."""

    checkpoint: Checkpoint  # its torch model also serves the feature maps, whatever the backend
    backend: InferenceBackend
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def feature_layers(self) -> list[str]:
        return list(getattr(self.checkpoint.model, "feature_layers", []))


def resolve_device(name: str) -> torch.device:
    """`auto` = CUDA device 0 when there is one, else the CPU; asking for missing CUDA is an error."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ServiceConfigError(f"RESNET_DEVICE={name} but CUDA is not available on this machine; "
                                 "use RESNET_DEVICE=cpu or auto")
    index = int(name.split(":", 1)[1]) if ":" in name else 0  # no current_device(): it would create a context
    if index >= torch.cuda.device_count():
        raise ServiceConfigError(f"RESNET_DEVICE={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device("cuda", index)


def _beside(checkpoint: Path) -> Path | None:
    try:
        index = checkpoint.with_name(CLASS_INDEX_NAME)
        return index if index.is_file() else None
    except (OSError, ValueError):  # "/", "..", names too long: no usable neighbour; loading will say why
        return None


def _refuse_special_file(path: Path | None) -> None:
    """Only regular files are read: /dev/zero or a FIFO given to reload would be read forever or block."""
    try:
        mode = path.stat().st_mode if path is not None else None
    except (OSError, ValueError):  # missing or unreadable: the loader names the problem
        return
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise CheckpointError(f"{path}: not a regular file")


def configured_sources(settings: Settings) -> tuple[Path, Path | None]:
    """RESNET_CHECKPOINT and its class index: RESNET_CLASS_INDEX, else class_indices.json beside it if present."""
    return settings.checkpoint, settings.class_index or _beside(settings.checkpoint)


def warm_up(backend: InferenceBackend, checkpoint: Checkpoint) -> None:
    """One forward pass on a blank image: first-call costs are paid here, and a broken model fails here."""
    spec = checkpoint.preprocess
    try:
        out = backend.predict(torch.zeros(1, spec.channels, spec.crop, spec.crop))
    except Exception as e:
        raise CheckpointError(f"{checkpoint.path}: warm-up forward pass failed: {type(e).__name__}: {e}") from None
    if tuple(out.shape) != (1, len(checkpoint.classes)):
        raise CheckpointError(f"{checkpoint.path}: the model returned shape {tuple(out.shape)}, "
                              f"expected (1, {len(checkpoint.classes)})")


class ModelManager:
    """Owns the model being served (`current`); `reload` replaces it only once the new one has warmed up."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.device = resolve_device(settings.device)
        self.current: LoadedModel | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def load(self, checkpoint: str | Path | None = None, class_index: str | Path | None = None) -> LoadedModel:
        """Load, build the backend and warm up (blocking; call it from a thread). Nothing is swapped."""
        if checkpoint is None and class_index is None:
            path, index = configured_sources(self.settings)
        else:
            path = Path(checkpoint) if checkpoint else self.settings.checkpoint
            index = Path(class_index) if class_index else _beside(path)
        for source in (path, index):
            _refuse_special_file(source)
        ckpt = load_checkpoint(path, map_location=self.device, class_index=index)
        backend = build_backend(self.settings, ckpt, self.device)
        warm_up(backend, ckpt)
        return LoadedModel(ckpt, backend)

    def activate(self, model: LoadedModel) -> None:
        """Swap `model` in: one reference assignment, so each request sees either the old or the new model."""
        self.current = model
        ckpt = model.checkpoint
        self.metrics.set_model(ckpt.arch, ckpt.sha256, model.backend.name, model.backend.device)
        log.info("serving %s (%s, sha256 %s) with %s on %s", ckpt.path.name, ckpt.arch, ckpt.sha256[:12],
                 model.backend.name, model.backend.device)

    async def reload(self, checkpoint: str | None = None, class_index: str | None = None) -> LoadedModel | None:
        """Load and warm up in a thread, then swap; returns the previous model. Raises if the new one is bad."""
        async with self._lock:
            try:
                new = await asyncio.to_thread(self.load, checkpoint, class_index)
            except ResNetServiceError:
                self.metrics.reloads.labels("failure").inc()
                raise
            previous = self.current
            self.activate(new)
            self.metrics.reloads.labels("success").inc()
            return previous

    def reload_in_background(self) -> None:
        """SIGHUP: reload the configured checkpoint; a failure is logged and the old model keeps serving."""
        task = asyncio.get_running_loop().create_task(self._logged_reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _logged_reload(self) -> None:
        log.info("SIGHUP: reloading %s", self.settings.checkpoint)
        try:
            await self.reload()
        except ResNetServiceError as e:
            log.error("reload failed, still serving the previous model: %s", e)
