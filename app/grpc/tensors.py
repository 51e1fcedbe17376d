"""Protobuf <-> the transport-neutral Open Inference Protocol of app/services/oip.py.

Inputs as `raw_input_contents` (BYTES elements with their 4-byte little-endian lengths, FP32 little-endian, as
tritonclient sends them) or as typed `contents` (`bytes_contents`, `fp32_contents`); outputs always in
`raw_output_contents`, as Triton answers. Validation is oip.py's, so both transports refuse the same requests
with the same messages.
"""

from __future__ import annotations

from typing import Any

import torch
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2

from app.core.errors import ProtocolError
from app.services import oip


def parse_infer_request(request: service_pb2.ModelInferRequest, *, channels: int, size: int,
                        max_items: int) -> oip.InferRequest:
    """Validate a ModelInferRequest against the model's inputs (`channels` x `size` x `size`)."""
    if not 1 <= len(request.inputs) <= 2:
        raise ProtocolError(oip.INPUTS_RULE)
    raws = _raw_inputs(request)
    images, batch = None, None
    for tensor, raw in zip(request.inputs, raws, strict=True):
        oip.check_input_name(tensor.name)
        if tensor.name == oip.IMAGE_INPUT:
            oip.check_datatype(tensor.name, tensor.datatype, "BYTES")
            shape = oip.image_shape(list(tensor.shape))
            items = oip.deserialize_bytes(raw) if raw is not None else list(tensor.contents.bytes_contents)
            images = oip.image_items(shape, items)
        else:
            oip.check_datatype(tensor.name, tensor.datatype, "FP32")
            shape = oip.check_shape(tensor.name, list(tensor.shape), 4)
            values = None if raw is not None else list(tensor.contents.fp32_contents)
            batch = oip.fp32_batch(shape, raw, values, channels, size)
    parsed = oip.InferRequest(id=request.id or None, output=_output_request(request))
    return oip.choose_input(parsed, images, batch, max_items)


def _raw_inputs(request: service_pb2.ModelInferRequest) -> list[bytes | None]:
    """Each input's raw_input_contents (all inputs have one, or none has), or None: its typed contents."""
    if not request.raw_input_contents:
        return [None] * len(request.inputs)
    if len(request.raw_input_contents) != len(request.inputs):
        raise ProtocolError(f"{len(request.raw_input_contents)} raw_input_contents for {len(request.inputs)} inputs")
    if any(t.HasField("contents") for t in request.inputs):
        raise ProtocolError("an input has both contents and raw_input_contents")
    return list(request.raw_input_contents)


def _parameter(params: Any, name: str) -> Any:
    if name not in params:
        return None
    value = params[name]
    choice = value.WhichOneof("parameter_choice")
    return getattr(value, choice) if choice else None


def _output_request(request: service_pb2.ModelInferRequest) -> oip.OutputRequest:
    if len(request.outputs) > 1:
        raise ProtocolError(f"'outputs' may request one tensor, {oip.OUTPUT!r}")
    if not request.outputs:
        return oip.OutputRequest(binary=True)
    output = request.outputs[0]
    if output.name != oip.OUTPUT:
        raise ProtocolError(f"unknown output {output.name!r}; this model has {oip.OUTPUT!r}")
    k = _parameter(output.parameters, "classification")
    return oip.OutputRequest(binary=True, classification=oip.check_classification(0 if k is None else k))


def infer_response(request: oip.InferRequest, probabilities: torch.Tensor, classes: list[str], *,
                   model_name: str, model_version: str) -> service_pb2.ModelInferResponse:
    """`probabilities` FP32 [N, K], or with the classification extension BYTES [N, k] of `score:index:label`."""
    response = service_pb2.ModelInferResponse(model_name=model_name, model_version=model_version,
                                              id=request.id or "")
    if request.output.classification:
        values, shape = oip.classification(probabilities, classes, request.output.classification)
        response.outputs.add(name=oip.OUTPUT, datatype="BYTES", shape=shape)
        response.raw_output_contents.append(oip.serialize_bytes([v.encode() for v in values]))
    else:
        response.outputs.add(name=oip.OUTPUT, datatype="FP32", shape=list(probabilities.shape))
        response.raw_output_contents.append(probabilities.numpy().astype("<f4").tobytes())
    return response


def metadata_response(metadata: dict[str, Any]) -> service_pb2.ModelMetadataResponse:
    """oip.model_metadata as protobuf (which has no place for the `parameters`)."""
    def tensors(items: list[dict[str, Any]]) -> list[service_pb2.ModelMetadataResponse.TensorMetadata]:
        return [service_pb2.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"],
                                                                 shape=t["shape"]) for t in items]

    return service_pb2.ModelMetadataResponse(name=metadata["name"], versions=metadata["versions"],
                                             platform=metadata["platform"], inputs=tensors(metadata["inputs"]),
                                             outputs=tensors(metadata["outputs"]))


def config_response(config: dict[str, Any]) -> service_pb2.ModelConfigResponse:
    """app/services/oip_model.model_config as Triton's ModelConfig message."""
    return service_pb2.ModelConfigResponse(config=json_format.ParseDict(config, model_config_pb2.ModelConfig()))


def statistics_response(stats: dict[str, Any]) -> service_pb2.ModelStatisticsResponse:
    """One app/services/oip_stats entry as Triton's ModelStatisticsResponse."""
    return json_format.ParseDict({"model_stats": [stats]}, service_pb2.ModelStatisticsResponse())
