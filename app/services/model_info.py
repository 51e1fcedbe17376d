"""The served model as the API describes it: `GET /v1/model` and the `model` part of every prediction."""

from __future__ import annotations

from typing import Any

import torch

from app.core.config import Settings
from app.schemas.model import BatchingInfo, ExportAccuracy, ModelInfo, PreprocessInfo
from app.schemas.predict import ModelRef
from app.services.model_source import LoadedModel
from models.backends import InferenceBackend, serving_accuracy


def model_ref(model: LoadedModel) -> ModelRef:
    ckpt = model.checkpoint
    return ModelRef(arch=ckpt.arch, checkpoint_sha256=ckpt.sha256, backend=model.backend.name,
                    device=model.backend.device)


def plain_json(value: Any) -> Any:
    """Checkpoint metadata made JSON-safe: tensors to numbers/lists, NaN and infinities to null."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value


def export_accuracy(backend: InferenceBackend) -> ExportAccuracy | None:
    """The accuracy recorded for the runtime that serves (None: exact fp32, or not checked on this runtime)."""
    record = serving_accuracy(backend)
    return ExportAccuracy.model_validate(record.as_dict()) if record is not None else None


def model_info(model: LoadedModel, settings: Settings) -> ModelInfo:
    """Everything a client may want to know about the model being served."""
    ckpt, backend = model.checkpoint, model.backend
    return ModelInfo(
        arch=ckpt.arch, arch_kwargs=plain_json(ckpt.arch_kwargs), classes=ckpt.classes,
        num_classes=len(ckpt.classes), num_parameters=ckpt.num_parameters,
        preprocess=PreprocessInfo(**ckpt.preprocess.to_dict()),
        feature_layers=model.feature_layers, device=backend.device, backend=backend.name,
        precision=backend.precision, export_accuracy=export_accuracy(backend),
        accuracy_checked_on=sorted(backend.accuracy_by_runtime),
        checkpoint_file=ckpt.path.name, checkpoint_sha256=ckpt.sha256, loaded_at=model.loaded_at,
        metrics=plain_json(ckpt.metrics),
        batching=BatchingInfo(max_batch_size=settings.max_batch_size, max_batch_delay_ms=settings.max_batch_delay_ms,
                              queue_size=settings.queue_size, request_timeout_s=settings.request_timeout_s),
    )
