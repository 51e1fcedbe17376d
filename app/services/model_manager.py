"""The model being served: load a checkpoint onto the device, open its backend, warm it up, swap it in atomically
(in every worker of the run), and say whether this worker is ready."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import torch

from app.core.config import Settings
from app.core.errors import NotReadyError, ServiceConfigError
from app.core.metrics import ServiceMetrics
from app.services.model_source import LoadedModel, ModelSource, configured_source, refuse_special_file
from app.workers import Peers, peers_for
from app.workers.rundir import RunDir
from models import Checkpoint, CheckpointError, ResNetServiceError, load_checkpoint
from models.backends import InferenceBackend, open_backend, serving_accuracy
from models.backends.artifact import exported_from_another
from models.device import DeviceError
from models.device import resolve_device as resolve_torch_device

log = logging.getLogger(__name__)


def service_device(name: str) -> torch.device:
    """`RESNET_DEVICE` to a device; missing CUDA or a GPU index past the last one is a one-line config error."""
    try:
        return resolve_torch_device(name)
    except DeviceError as e:
        hint = "; use RESNET_DEVICE=cpu or auto" if "not available" in str(e) else ""
        raise ServiceConfigError(f"RESNET_DEVICE={name} but {e}{hint}") from None


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


def artifact_for(settings: Settings, checkpoint: Checkpoint) -> Path | None:
    """RESNET_ONNX_PATH when it is the file to run for `checkpoint`. It belongs to RESNET_CHECKPOINT: a reload of
    another checkpoint, for which it was not exported, exports that one at load instead (None)."""
    if settings.onnx_path is None:
        return None
    if not _same_file(checkpoint.path, settings.checkpoint) and exported_from_another(settings.onnx_path, checkpoint):
        log.info("%s is not RESNET_CHECKPOINT: exporting it to ONNX instead of using %s", checkpoint.path,
                 settings.onnx_path)
        return None
    return settings.onnx_path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def open_configured_backend(settings: Settings, checkpoint: Checkpoint, device: torch.device) -> InferenceBackend:
    """`models.backends.open_backend` with RESNET_BACKEND, RESNET_ONNX_PATH and the torch threads setting."""
    return open_backend(checkpoint, artifact=artifact_for(settings, checkpoint), device=device,
                        runtime=settings.backend, threads=settings.resolved_torch_threads)


class ModelManager:
    """Owns the model being served (`current`); `reload` replaces it only once the new one has warmed up.

    With `resnet-serve --workers N` the first model and every reload go through all workers (app/workers/).
    """

    def __init__(self, settings: Settings, metrics: ServiceMetrics, run: RunDir | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.device = service_device(settings.device)
        self.current: LoadedModel | None = None
        self.accepting = False  # False before the first model is in and once shutdown has begun
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.peers: Peers = peers_for(run, self.load, self.activate)

    def load(self, source: ModelSource | None = None) -> LoadedModel:
        """Load, open the backend and warm up (blocking; call it from a thread). Nothing is swapped."""
        source = source or configured_source(self.settings)
        for path in (source.checkpoint, source.class_index):
            refuse_special_file(path)
        ckpt = load_checkpoint(source.checkpoint, map_location=self.device, class_index=source.class_index,
                               arch=source.arch, arch_kwargs=source.arch_kwargs, preprocess=source.preprocess)
        backend = open_configured_backend(self.settings, ckpt, self.device)
        warm_up(backend, ckpt)
        return LoadedModel(ckpt, backend)

    def activate(self, model: LoadedModel) -> None:
        """Swap `model` in: one reference assignment, so each request sees either the old or the new model."""
        self.current = model
        ckpt, backend = model.checkpoint, model.backend
        self.metrics.set_model(ckpt.arch, ckpt.sha256, backend.name, backend.device, backend.precision,
                               serving_accuracy(backend))
        log.info("serving %s (%s, sha256 %s) with %s on %s", ckpt.path.name, ckpt.arch, ckpt.sha256[:12],
                 backend.name, backend.device)

    def model(self) -> LoadedModel:
        """The model serving now; `NotReadyError` before the first load or once shutdown has begun."""
        model = self.current
        if model is None or not self.accepting:
            raise NotReadyError("no model is loaded")
        return model

    def ready_model(self) -> LoadedModel:
        """`/health/ready`: `model()`, and 503 while this worker lags behind the model its run committed to."""
        model = self.model()
        if not self.peers.is_current():
            raise NotReadyError("this worker does not serve the current model yet")
        return model

    async def start(self) -> None:
        """Load and swap in the first model: the configured one, or the one every worker of the run serves."""
        await self.peers.join(configured_source(self.settings))

    def accept_reloads(self) -> None:
        """Serve requests and take part in the run's reloads from now on (once the SIGHUP handler is in place,
        since the supervisor then passes SIGHUP here)."""
        self.accepting = True
        self.peers.start()

    async def close(self) -> None:
        """Refuse new requests, and leave the run's reloads."""
        self.accepting = False
        await self.peers.stop()

    async def reload(self, source: ModelSource | None = None) -> LoadedModel | None:
        """Load and warm up in a thread, then swap (in every worker of the run); returns the previous model. Raises
        if the new one is bad, and then nothing was swapped."""
        async with self._lock:
            previous = self.current
            try:
                await self.peers.reload(source or configured_source(self.settings))
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
