"""Open Inference Protocol (KServe v2 / Triton HTTP) shapes, as the spec names them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class OipError(BaseModel):
    error: str = Field(description="What was wrong.")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1: any size in that dimension (the batch).")
    parameters: dict[str, Any] | None = None


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(description="Architecture, classes, checkpoint sha256 and the preprocessing "
                                                   "that `input` must already have had.")


class InferInputTensor(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: Literal["image", "input"]
    datatype: Literal["BYTES", "FP32"] = Field(description="`image`: BYTES; `input`: FP32.")
    shape: list[int] = Field(description="`image`: [N]; `input`: [N, C, H, W].")
    parameters: dict[str, Any] | None = Field(None, description="`binary_data_size`: the tensor is in the binary "
                                                                "data after the JSON.")
    data: list[Any] | None = Field(None, description="`image`: base64 strings; `input`: numbers, flat or nested.")


class InferRequestedOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: Literal["probabilities"]
    parameters: dict[str, Any] | None = Field(None, description="`binary_data`: bool; `classification`: k.")


class InferRequestBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="`binary_data_output`: all outputs binary.")
    inputs: list[InferInputTensor] = Field(min_length=1, max_length=1)
    outputs: list[InferRequestedOutput] | None = Field(None, max_length=1)


class InferOutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponseBody(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutputTensor]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ModelConfigTensor(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    data_type: str = Field(description="Triton's type: TYPE_STRING (BYTES), TYPE_FP32.")
    dims: list[int] = Field(description="Without the batch dimension (max_batch_size > 0).")
    optional: bool | None = None


class ModelConfig(BaseModel):
    """Triton's model configuration (model_config.proto, JSON form)."""

    model_config = ConfigDict(extra="allow")
    name: str
    platform: str
    backend: str
    max_batch_size: int = Field(description="Most items per request (RESNET_MAX_BATCH_FILES).")
    input: list[ModelConfigTensor]
    output: list[ModelConfigTensor]
    dynamic_batching: dict[str, Any]


class StatDuration(BaseModel):
    count: int
    ns: int


class InferStatistics(BaseModel):
    model_config = ConfigDict(extra="allow")
    success: StatDuration
    fail: StatDuration
    queue: StatDuration
    compute_input: StatDuration
    compute_infer: StatDuration
    compute_output: StatDuration


class ModelStatistics(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    version: str
    last_inference: int = Field(description="Milliseconds since the epoch of the last success (0: none yet).")
    inference_count: int
    execution_count: int
    inference_stats: InferStatistics
    batch_stats: list[dict[str, Any]]


class ModelStatisticsResponse(BaseModel):
    model_stats: list[ModelStatistics] = Field(description="This worker process's statistics.")
