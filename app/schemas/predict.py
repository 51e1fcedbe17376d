"""Shapes of the prediction endpoints."""

from pydantic import BaseModel, Field

from app.schemas.errors import ErrorBody
from app.schemas.model import Runtime


class Prediction(BaseModel):
    label: str = Field(description="Class name.", examples=["cat"])
    index: int = Field(ge=0, description="Output unit of the class (its key in class_indices.json).")
    score: float = Field(ge=0, le=1, description="Softmax probability.")


class ModelRef(BaseModel):
    arch: str = Field(description="Registry name of the architecture.", examples=["resnet50"])
    checkpoint_sha256: str = Field(description="SHA-256 of the checkpoint file that answered.")
    backend: Runtime = Field(description="The runtime that ran the model.")
    device: str = Field(description="Device the model runs on, e.g. `cpu` or `cuda:0`.")


class Timing(BaseModel):
    decode_ms: float = Field(description="Decoding and preprocessing (worker thread).")
    queue_ms: float = Field(description="Wait in the inference queue before the forward pass started.")
    inference_ms: float = Field(description="The forward pass that included this image (shared by its batch).")
    batch_size: int = Field(ge=1, description="Number of images in that forward pass.")
    total_ms: float = Field(description="From the request's arrival to the response.")


class PredictResponse(BaseModel):
    predictions: list[Prediction] = Field(description="Top-k classes, highest score first.")
    model: ModelRef
    timing_ms: Timing


class BatchItem(BaseModel):
    index: int = Field(ge=0, description="Position of the file in the request.")
    filename: str | None = Field(description="Name the client gave the file, if any.")
    predictions: list[Prediction] | None = Field(description="Top-k classes, or null when this file failed.")
    error: ErrorBody | None = Field(description="Why this file failed, or null.")


class BatchTiming(BaseModel):
    total_ms: float = Field(description="From the request's arrival to the response.")


class BatchResponse(BaseModel):
    results: list[BatchItem] = Field(description="One entry per uploaded file, in request order.")
    model: ModelRef
    timing_ms: BatchTiming
