"""The service's backend choice: `build_backend` picks one of models/backends/ from the settings."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from app.core.config import Settings
from app.core.errors import ServiceConfigError
from models import Checkpoint, ResNetServiceError
from models.backends import (
    InferenceBackend,
    TorchBackend,
    onnx_backend_available,
    onnx_runtime_class,
    openvino_available,
    preferred_onnx_runtime,
    use_channels_last,
)

__all__ = ["InferenceBackend", "TorchBackend", "build_backend", "onnx_backend_available"]
log = logging.getLogger(__name__)


def build_backend(settings: Settings, checkpoint: Checkpoint, device: torch.device) -> InferenceBackend:
    """The backend `settings.backend` asks for. `auto`: on the CPU, the artifact's preferred runtime (openvino, when
    installed, for a bf16 or int8 artifact: measured faster there, docs/BENCHMARKS.md), else onnxruntime when
    available, else torch; torch on CUDA. An artifact given in RESNET_ONNX_PATH is served as given or refused,
    never replaced by another backend."""
    artifact = artifact_for(settings, checkpoint)
    choice = settings.backend
    if choice == "auto":
        choice = _auto_choice(artifact, device)
    if choice == "torch":
        if artifact is not None:
            log.warning("RESNET_ONNX_PATH=%s is not used: the torch backend runs the checkpoint itself", artifact)
        return TorchBackend(checkpoint, device, channels_last=use_channels_last(device))
    try:
        return _onnx_backend(settings, checkpoint, device, choice, artifact)
    except ResNetServiceError as e:
        if settings.backend != "auto" or artifact is not None:
            raise
        log.warning("%s backend unavailable, falling back to torch: %s", choice, e)
        return TorchBackend(checkpoint, device, channels_last=use_channels_last(device))


def artifact_for(settings: Settings, checkpoint: Checkpoint) -> str | None:
    """RESNET_ONNX_PATH when it is the file to run for `checkpoint`. It belongs to RESNET_CHECKPOINT: a reload of
    another checkpoint, for which it was not exported, exports that one at load instead (None)."""
    if not settings.onnx_path:
        return None
    path = str(settings.onnx_path)
    if not _same_file(checkpoint.path, settings.checkpoint) and _exported_from_another(path, checkpoint):
        log.info("%s is not RESNET_CHECKPOINT: exporting it to ONNX instead of using %s", checkpoint.path, path)
        return None
    return path


def _auto_choice(artifact: str | None, device: torch.device) -> str:
    if device.type != "cpu":
        return "torch"
    if artifact is not None:
        return preferred_onnx_runtime(_readable_metadata(artifact).get("precision", "fp32"))
    return "onnxruntime" if onnx_backend_available() else "torch"


def _onnx_backend(settings: Settings, checkpoint: Checkpoint, device: torch.device, choice: str,
                  artifact: str | None) -> InferenceBackend:
    if not onnx_backend_available():
        raise ServiceConfigError(
            f"RESNET_BACKEND={choice} needs the onnxruntime package and models/backends/onnx_backend.py "
            "(pip install 'resnet-service[onnx]'), or set RESNET_BACKEND=torch"
        )
    if choice == "openvino" and not openvino_available():
        raise ServiceConfigError("RESNET_BACKEND=openvino needs the openvino package "
                                 "(pip install 'resnet-service[openvino]')")
    try:
        return onnx_runtime_class(choice)(checkpoint, onnx_path=artifact, threads=settings.resolved_torch_threads,
                                          device=str(device))
    except ResNetServiceError:
        raise
    except Exception as e:  # export or session creation failed: say so in one line
        raise ServiceConfigError(f"{choice} backend failed to start: {type(e).__name__}: {e}") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _readable_metadata(onnx_path: str) -> dict:
    """The metadata of `onnx_path`; {} when it cannot be read (the backend then says why, in one line)."""
    from models.onnx_export import read_onnx_metadata

    try:
        return read_onnx_metadata(onnx_path)
    except ResNetServiceError:
        return {}


def _exported_from_another(onnx_path: str, checkpoint: Checkpoint) -> bool:
    """True when `onnx_path` is a readable export of a different checkpoint (unreadable files fail later, clearly)."""
    embedded = _readable_metadata(onnx_path).get("checkpoint_sha256")
    return embedded is not None and embedded != checkpoint.sha256
