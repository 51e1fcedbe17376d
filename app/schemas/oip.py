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
