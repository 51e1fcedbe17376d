"""Shapes of the model description and reload endpoints."""

from dataclasses import fields
from datetime import datetime
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from models.accuracy import PRECISIONS, AccuracyRecord
from models.backends.base import RUNTIMES

Precision = Literal[PRECISIONS]  # type: ignore[valid-type]
Runtime = Literal[RUNTIMES]  # type: ignore[valid-type]


class PreprocessInfo(BaseModel):
    resize: int = Field(description="Shorter side is resized to this many pixels.")
    crop: int = Field(description="Then a central square of this size is cropped.")
    mean: list[float]
    std: list[float]
    interpolation: str
    color_mode: str = Field(description="`RGB` or `L`.")


class BatchingInfo(BaseModel):
    max_batch_size: int
    max_batch_delay_ms: float
    queue_size: int
    request_timeout_s: float


ExportAccuracy = create_model(
    "ExportAccuracy", __doc__="What `resnet-export` measured for a low-precision artifact, on held-out images.",
    **{f.name: (get_type_hints(AccuracyRecord)[f.name], Field(description=f.metadata["doc"]))
       for f in fields(AccuracyRecord)})


class ModelInfo(BaseModel):
    arch: str
    arch_kwargs: dict[str, Any]
    classes: list[str] = Field(description="Class names; position = output index.")
    num_classes: int
    num_parameters: int
    preprocess: PreprocessInfo
    feature_layers: list[str] = Field(description="Layers `POST /v1/feature-maps` can show.")
    device: str
    backend: Runtime = Field(description="The runtime serving predictions (RESNET_BACKEND, `auto` resolved).")
    precision: Precision = Field(description="Arithmetic of the forward pass.")
    export_accuracy: ExportAccuracy | None = Field(description="Accuracy of a low-precision artifact against fp32, "
                                                   "measured at export on the runtime that serves it; null for "
                                                   "the exact fp32 path or when not checked on this runtime.")
    accuracy_checked_on: list[Runtime] = Field(description="Runtimes on which resnet-export measured this "
                                                           "artifact's accuracy (empty for fp32).")
    checkpoint_file: str = Field(description="File name of the checkpoint (no directory).")
    checkpoint_sha256: str
    loaded_at: datetime
    metrics: dict[str, Any] = Field(description="Validation metrics stored in the checkpoint by training.")
    batching: BatchingInfo


class ReloadRequest(BaseModel):
    """What to load; every field optional (default: the configured one). Paths are inside RESNET_MODEL_DIR."""

    model_config = ConfigDict(extra="forbid")
    checkpoint: str | None = Field(None, description="Checkpoint to load, inside RESNET_MODEL_DIR (a relative path "
                                                     "is taken there); default: the configured RESNET_CHECKPOINT.")
    class_index: str | None = Field(
        None, description="Class index that must agree with it; default: class_indices.json beside the checkpoint."
    )
    arch: str | None = Field(None, description="Architecture of a bare state dict (as RESNET_ARCH).")
    arch_kwargs: dict[str, Any] | None = Field(None, description="Its builder options (as RESNET_ARCH_KWARGS).")
    preprocess: dict[str, Any] | None = Field(None, description="Its preprocessing (as RESNET_PREPROCESS).")

    @field_validator("checkpoint", "class_index")
    @classmethod
    def _usable_path(cls, v: str | None) -> str | None:
        if v is not None and any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in v):
            raise ValueError("a file path cannot contain NUL characters or lone surrogates")
        return v


class ReloadResponse(BaseModel):
    status: Literal["reloaded"] = "reloaded"
    previous_sha256: str | None = Field(description="Checkpoint that was serving before the swap.")
    model: ModelInfo
