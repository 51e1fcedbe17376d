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
    """The backend `settings.backend` asks for; `auto` = onnxruntime on the CPU when available (openvino, when
    installed, for a bf16 or int8 artifact: measured faster at low precision, docs/BENCHMARKS.md), else torch."""
    choice = settings.backend
    if choice == "auto":
        choice = _auto_choice(settings, device)
    if choice == "torch":
        return TorchBackend(checkpoint, device, channels_last=use_channels_last(device))
    try:
        return _onnx_backend(settings, checkpoint, device, choice)
    except ResNetServiceError as e:
        if settings.backend != "auto":
            raise
        log.warning("onnxruntime backend unavailable, falling back to torch: %s", e)
        return TorchBackend(checkpoint, device, channels_last=use_channels_last(device))


def _auto_choice(settings: Settings, device: torch.device) -> str:
    if device.type != "cpu" or not onnx_backend_available():
        return "torch"
    precision = _artifact_precision(str(settings.onnx_path)) if settings.onnx_path else None
    return preferred_onnx_runtime(precision or "fp32")


def _onnx_backend(settings: Settings, checkpoint: Checkpoint, device: torch.device, choice: str) -> InferenceBackend:
    if not onnx_backend_available():
        raise ServiceConfigError(
            f"RESNET_BACKEND={choice} needs the onnxruntime package and models/backends/onnx_backend.py "
            "(pip install 'resnet-service[onnx]'), or set RESNET_BACKEND=torch"
        )
    if choice == "openvino" and not openvino_available():
        raise ServiceConfigError("RESNET_BACKEND=openvino needs the openvino package "
                                 "(pip install 'resnet-service[openvino]')")
    onnx_path = str(settings.onnx_path) if settings.onnx_path else None
    if onnx_path and not _same_file(checkpoint.path, settings.checkpoint) and _exported_from_another(onnx_path,
                                                                                                     checkpoint):
        # RESNET_ONNX_PATH belongs to RESNET_CHECKPOINT; a reload of another checkpoint exports that one instead.
        log.info("%s is not RESNET_CHECKPOINT: exporting it to ONNX instead of using %s", checkpoint.path, onnx_path)
        onnx_path = None
    try:
        return onnx_runtime_class(choice)(checkpoint, onnx_path=onnx_path, threads=settings.resolved_torch_threads,
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


def _artifact_precision(onnx_path: str) -> str | None:
    """The precision recorded in `onnx_path`, None when it cannot be read (the backend then says why)."""
    from models.onnx_export import read_onnx_metadata

    try:
        return read_onnx_metadata(onnx_path).get("precision", "fp32")
    except ResNetServiceError:
        return None


def _exported_from_another(onnx_path: str, checkpoint: Checkpoint) -> bool:
    """True when `onnx_path` is a readable export of a different checkpoint (unreadable files fail later, clearly)."""
    from models.onnx_export import read_onnx_metadata

    try:
        embedded = read_onnx_metadata(onnx_path).get("checkpoint_sha256")
    except ResNetServiceError:
        return False
    return embedded is not None and embedded != checkpoint.sha256
