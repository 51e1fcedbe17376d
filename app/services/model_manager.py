"""Loads checkpoints onto the device, warms them up, and swaps them in atomically on reload."""

from __future__ import annotations

import asyncio
import logging
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from app.backends import build_backend
from app.core.config import Settings
from app.core.errors import ForbiddenPathError, ServiceConfigError
from app.core.metrics import ServiceMetrics
from app.core.rundir import RunDir
from app.services.cluster import Cluster
from models import CLASS_INDEX_NAME, Checkpoint, CheckpointError, ResNetServiceError, load_checkpoint
from models.backends.base import InferenceBackend
from models.device import DeviceError
from models.device import resolve_device as resolve_torch_device

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
    """`RESNET_DEVICE` to a device; missing CUDA or a GPU index past the last one is a one-line config error."""
    try:
        return resolve_torch_device(name)
    except DeviceError as e:
        hint = "; use RESNET_DEVICE=cpu or auto" if "not available" in str(e) else ""
        raise ServiceConfigError(f"RESNET_DEVICE={name} but {e}{hint}") from None


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

    def __init__(self, settings: Settings, metrics: ServiceMetrics, run: RunDir | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.device = resolve_device(settings.device)
        self.current: LoadedModel | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        # One of several workers of `resnet-serve`: the first model and every reload go through all of them.
        self.cluster = Cluster(run, self.load, self.activate) if run is not None else None

    def load(self, source: ModelSource | None = None) -> LoadedModel:
        """Load, build the backend and warm up (blocking; call it from a thread). Nothing is swapped."""
        source = source or configured_source(self.settings)
        for path in (source.checkpoint, source.class_index):
            _refuse_special_file(path)
        ckpt = load_checkpoint(source.checkpoint, map_location=self.device, class_index=source.class_index,
                               arch=source.arch, arch_kwargs=source.arch_kwargs, preprocess=source.preprocess)
        backend = build_backend(self.settings, ckpt, self.device)
        warm_up(backend, ckpt)
        return LoadedModel(ckpt, backend)

    def activate(self, model: LoadedModel) -> None:
        """Swap `model` in: one reference assignment, so each request sees either the old or the new model."""
        self.current = model
        ckpt, backend = model.checkpoint, model.backend
        self.metrics.set_model(ckpt.arch, ckpt.sha256, backend.name, backend.device, backend.precision,
                               backend.accuracy)
        log.info("serving %s (%s, sha256 %s) with %s on %s", ckpt.path.name, ckpt.arch, ckpt.sha256[:12],
                 model.backend.name, model.backend.device)

    async def start(self) -> None:
        """Load and swap in the first model: the configured one, or the one every worker of the run serves."""
        if self.cluster is None:
            self.activate(await asyncio.to_thread(self.load))
        else:
            await self.cluster.join()

    def accept_reloads(self) -> None:
        """With several workers: take part in the run's reloads from now on (once the SIGHUP handler is in place,
        since the supervisor then passes SIGHUP here)."""
        if self.cluster is not None:
            self.cluster.start()

    async def close(self) -> None:
        """Leave the run's reloads (several workers); nothing to do for a lone server."""
        if self.cluster is not None:
            await self.cluster.stop()

    def serves_current(self) -> bool:
        """False while this worker lags behind the model its run committed to (always True for a lone server)."""
        return self.cluster is None or self.cluster.is_current()

    async def reload(self, source: ModelSource | None = None) -> LoadedModel | None:
        """Load and warm up in a thread, then swap (in every worker of the run); returns the previous model. Raises
        if the new one is bad, and then nothing was swapped."""
        async with self._lock:
            previous = self.current
            try:
                if self.cluster is None:
                    self.activate(await asyncio.to_thread(self.load, source))
                else:
                    await self.cluster.reload(source or configured_source(self.settings))
            except ResNetServiceError:
                self.metrics.reloads.labels("failure").inc()
                raise
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
