"""Shapes of the model description and reload endpoints."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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


class ExportAccuracy(BaseModel):
    """What `resnet-export` measured for a low-precision artifact, on held-out images."""

    top1_fp32: float = Field(description="Top-1 of the exact fp32 model.")
    top1: float = Field(description="Top-1 of the model at the precision being served.")
    agreement: float = Field(description="Share of images whose top-1 class both models agree on.")
    eval_size: int = Field(description="Held-out images compared.")


class ModelInfo(BaseModel):
    arch: str
    arch_kwargs: dict[str, Any]
    classes: list[str] = Field(description="Class names; position = output index.")
    num_classes: int
    num_parameters: int
    preprocess: PreprocessInfo
    feature_layers: list[str] = Field(description="Layers `POST /v1/feature-maps` can show.")
    device: str
    backend: str
    precision: Literal["fp32", "bf16", "int8"] = Field(description="Arithmetic of the forward pass.")
    export_accuracy: ExportAccuracy | None = Field(description="Accuracy of a low-precision artifact against fp32, "
                                                   "measured at export; null for the exact fp32 path.")
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
