"""The Open Inference Protocol (KServe v2 / Triton HTTP) on the wire: request parsing and response encoding.

Pure functions, no I/O: `parse_infer_request` turns a body (JSON, optionally followed by binary tensor data,
the *binary tensor data extension*) into images or a preprocessed batch plus what the client asked back;
`encode_infer_response` turns probabilities into the response body (with the *classification extension*).

Inputs: `image` BYTES [N] or [N, 1] (encoded image files: base64 strings in JSON, raw in binary data, each element
a 4-byte little-endian length and its bytes) or `input` FP32 [N, C, H, W] (already preprocessed).
Output: `probabilities` FP32 [N, K], or with `parameters.classification = k` BYTES [N, k] of `"score:index:label"`,
best first.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from app.core.errors import ProtocolError
from app.services.model_source import LoadedModel
from models.preprocess import IMAGE_FORMAT_NAMES

IMAGE_INPUT, TENSOR_INPUT, OUTPUT = "image", "input", "probabilities"
HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "statistics"]


@dataclass
class OutputRequest:
    binary: bool
    classification: int = 0  # 0: the probabilities themselves


@dataclass
class InferRequest:
    """What the client sent: `images` (encoded files) or `tensor` (N, C, H, W), and how to answer."""

    id: str | None
    images: list[bytes] | None = None
    tensor: torch.Tensor | None = None
    output: OutputRequest = field(default_factory=lambda: OutputRequest(binary=False))

    @property
    def count(self) -> int:
        return len(self.images) if self.images is not None else int(self.tensor.shape[0])  # type: ignore[union-attr]


def model_metadata(model: LoadedModel, name: str, version: str) -> dict[str, Any]:
    """`GET /v2/models/{name}`: the inputs, the output, and the preprocessing `input` must already have had."""
    ckpt, spec = model.checkpoint, model.checkpoint.preprocess
    preprocess = spec.to_dict()
    return {
        "name": name, "versions": [version], "platform": f"pytorch_{ckpt.arch}",
        "inputs": [{"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1, 1],
                    "parameters": {"content": f"encoded image files ({IMAGE_FORMAT_NAMES})"}},
                   {"name": TENSOR_INPUT, "datatype": "FP32", "shape": [-1, spec.channels, spec.crop, spec.crop],
                    "parameters": preprocess}],
        "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, len(ckpt.classes)]}],
        "parameters": {"arch": ckpt.arch, "classes": list(ckpt.classes), "checkpoint_sha256": ckpt.sha256,
                       "backend": model.backend.name, "device": model.backend.device, "preprocess": preprocess},
    }


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header (the whole body without the binary extension) and the binary data after it."""
    if header_length is None:
        size = len(body)
    else:
        try:
            size = int(header_length)
        except ValueError:
            raise ProtocolError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 < size <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {size} does not fit a body of {len(body)} bytes")
    try:
        header = json.loads(body[:size])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"the inference request is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError("the inference request must be a JSON object")
    return header, body[size:]


def parse_infer_request(body: bytes, header_length: str | None, *, channels: int, size: int,
                        max_items: int) -> InferRequest:
    """Validate one inference request against the model's inputs (`channels` x `size` x `size`)."""
    header, binary = split_body(body, header_length)
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not 1 <= len(inputs) <= 2 or not all(isinstance(t, dict) for t in inputs):
        raise ProtocolError(INPUTS_RULE)
    raws = _binary_parts(inputs, binary)
    request_id = header.get("id")
    request = InferRequest(id=str(request_id) if request_id is not None else None,
                           output=_output_request(header))
    images, tensor = None, None
    for item, raw in zip(inputs, raws, strict=True):
        check_input_name(item.get("name"))
        if item.get("name") == IMAGE_INPUT:
            images = _images(item, raw)
        else:
            tensor = _fp32(item, raw, channels, size)
    return choose_input(request, images, tensor, max_items)


INPUTS_RULE = (f"'inputs' must hold one tensor, {IMAGE_INPUT!r} or {TENSOR_INPUT!r} (or both with the same batch "
               f"size, as perf_analyzer sends its generated data: then {TENSOR_INPUT!r} is used)")


def choose_input(request: InferRequest, images: list[bytes] | None, tensor: torch.Tensor | None,
                 max_items: int) -> InferRequest:
    """`request` with its input: the images, or the tensor when there is one (a client that sends both, as
    perf_analyzer does with the model's two optional inputs, gets the tensor's answer: it needs no decoding)."""
    if images is None and tensor is None:
        raise ProtocolError(INPUTS_RULE)
    if images is not None and tensor is not None and len(images) != tensor.shape[0]:
        raise ProtocolError(f"inputs {IMAGE_INPUT!r} and {TENSOR_INPUT!r} have different batch sizes "
                            f"({len(images)} and {tensor.shape[0]})")
    if tensor is not None:
        request.tensor = tensor
    else:
        request.images = images
    return check_count(request, max_items)


def _binary_parts(inputs: list[dict[str, Any]], binary: bytes) -> list[bytes | None]:
    """Each input's binary data (None: it is in JSON), cut from `binary` in input order."""
    parts: list[bytes | None] = []
    offset = 0
    for tensor in inputs:
        params = tensor.get("parameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError("'parameters' of an input must be an object")
        size = params.get("binary_data_size")
        if size is None:
            if "data" not in tensor:
                raise ProtocolError(f"input {tensor.get('name')!r} has neither 'data' nor "
                                    "parameters.binary_data_size")
            parts.append(None)
            continue
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= len(binary) - offset:
            raise ProtocolError(f"binary_data_size {size!r} does not match the {len(binary)} bytes after the JSON")
        parts.append(binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        if offset == 0:
            raise ProtocolError(f"{len(binary)} bytes follow the JSON, but no input has parameters.binary_data_size")
        raise ProtocolError(f"binary_data_size {offset} does not match the {len(binary)} bytes after the JSON")
    return parts


def _shape(tensor: dict[str, Any], rank: int) -> list[int]:
    return check_shape(tensor.get("name"), tensor.get("shape"), rank)


def check_shape(name: Any, shape: Any, rank: int) -> list[int]:
    """`shape` as a list of `rank` non-negative integers, or ProtocolError naming the input."""
    if (not isinstance(shape, list) or len(shape) != rank
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise ProtocolError(f"input {name!r} needs a shape of {rank} non-negative integers, got {shape!r}")
    return shape


def _datatype(tensor: dict[str, Any], expected: str) -> None:
    check_datatype(tensor.get("name"), tensor.get("datatype"), expected)


def check_datatype(name: Any, datatype: Any, expected: str) -> None:
    if datatype != expected:
        raise ProtocolError(f"input {name!r} has datatype {expected}, got {datatype!r}")


def check_input_name(name: Any) -> None:
    if name not in (IMAGE_INPUT, TENSOR_INPUT):
        raise ProtocolError(f"unknown input {name!r}; this model takes {IMAGE_INPUT!r} or {TENSOR_INPUT!r}")


def check_count(request: InferRequest, max_items: int) -> InferRequest:
    """`request`, unless it holds no item or more than RESNET_MAX_BATCH_FILES."""
    if not 1 <= request.count <= max_items:
        raise ProtocolError(f"a request holds 1 to {max_items} items (RESNET_MAX_BATCH_FILES), got {request.count}")
    return request


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [x for item in data for x in _flatten(item)]
    return [data]


def _images(tensor: dict[str, Any], raw: bytes | None) -> list[bytes]:
    _datatype(tensor, "BYTES")
    shape = image_shape(tensor.get("shape"))
    items = deserialize_bytes(raw) if raw is not None else [_b64(i, s) for i, s in enumerate(_flatten(tensor["data"]))]
    return image_items(shape, items)


def image_shape(shape: Any) -> list[int]:
    """`image`'s shape: [N], or [N, 1] as Triton writes one element per batch item (model config dims [1])."""
    if isinstance(shape, list) and len(shape) == 2 and shape[1] == 1:
        return check_shape(IMAGE_INPUT, shape, 2)
    return check_shape(IMAGE_INPUT, shape, 1)


def image_items(shape: list[int], items: list[bytes]) -> list[bytes]:
    """The `image` elements, when there are as many as its shape [N] says."""
    if len(items) != shape[0]:
        raise ProtocolError(f"input {IMAGE_INPUT!r} has shape {shape} but holds {len(items)} elements")
    return items


def _b64(index: int, value: Any) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError(f"input {IMAGE_INPUT!r} element {index}: in JSON, BYTES elements are base64 strings")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"input {IMAGE_INPUT!r} element {index}: not valid base64") from None


def deserialize_bytes(raw: bytes) -> list[bytes]:
    """BYTES binary data: each element is a 4-byte little-endian length, then that many bytes."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ProtocolError("BYTES binary data ends inside an element's 4-byte length")
        (n,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + n > len(raw):
            raise ProtocolError(f"BYTES element {len(items)} claims {n} bytes; only {len(raw) - offset} remain")
        items.append(raw[offset : offset + n])
        offset += n
    return items


def serialize_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def _fp32(tensor: dict[str, Any], raw: bytes | None, channels: int, size: int) -> torch.Tensor:
    _datatype(tensor, "FP32")
    shape = _shape(tensor, 4)
    values = None if raw is not None else _flatten(tensor["data"])
    return fp32_batch(shape, raw, values, channels, size)


def fp32_batch(shape: list[int], raw: bytes | None, values: list[Any] | None, channels: int,
               size: int) -> torch.Tensor:
    """The `input` tensor [N, C, H, W] from raw little-endian bytes or from a flat list of numbers."""
    if shape[1:] != [channels, size, size]:
        raise ProtocolError(f"input {TENSOR_INPUT!r} must have shape [N, {channels}, {size}, {size}], got {shape}")
    count = math.prod(shape)
    if raw is not None:
        if len(raw) != 4 * count:
            raise ProtocolError(f"input {TENSOR_INPUT!r} of shape {shape} needs {4 * count} bytes, got {len(raw)}")
        array = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    else:
        values = values or []
        if len(values) != count or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ProtocolError(f"input {TENSOR_INPUT!r} of shape {shape} needs {count} numbers, got {len(values)}")
        array = np.asarray(values, dtype=np.float32)
    # NaN and infinities pass, as Triton passes them to its models: the answer is what the model computes (NaN).
    # perf_analyzer's generated data, random bytes, holds some.
    return torch.from_numpy(array.reshape(shape).copy())


def _output_request(header: dict[str, Any]) -> OutputRequest:
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    binary_default = params.get("binary_data_output", False) is True
    outputs = header.get("outputs")
    if outputs is None:
        return OutputRequest(binary=binary_default)
    if not isinstance(outputs, list) or len(outputs) != 1 or not isinstance(outputs[0], dict):
        raise ProtocolError(f"'outputs' may request one tensor, {OUTPUT!r}")
    if outputs[0].get("name") != OUTPUT:
        raise ProtocolError(f"unknown output {outputs[0].get('name')!r}; this model has {OUTPUT!r}")
    out_params = outputs[0].get("parameters") or {}
    if not isinstance(out_params, dict):
        raise ProtocolError("'parameters' of an output must be an object")
    return OutputRequest(binary=out_params.get("binary_data", binary_default) is True,
                         classification=check_classification(out_params.get("classification", 0)))


def check_classification(k: Any) -> int:
    """`parameters.classification` of the output: k >= 0 (0: the probabilities themselves)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ProtocolError(f"parameters.classification must be a non-negative integer, got {k!r}")
    return k


def classification(probabilities: torch.Tensor, classes: list[str], k: int) -> tuple[list[str], list[int]]:
    """The classification extension: each row's best `k` as `"score:index:label"`, flat, and their shape [N, k]."""
    k = min(k, len(classes))
    scores, indices = probabilities.topk(k, dim=1)
    values = [f"{s:f}:{i}:{classes[i]}" for row_s, row_i in zip(scores.tolist(), indices.tolist(), strict=True)
              for s, i in zip(row_s, row_i, strict=True)]
    return values, [probabilities.shape[0], k]


def encode_infer_response(request: InferRequest, probabilities: torch.Tensor, classes: list[str], *,
                          model_name: str, model_version: str) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON, or JSON + binary data when the output is binary."""
    out = request.output
    values: list[Any]
    if out.classification:
        values, shape = classification(probabilities, classes, out.classification)
        tensor: dict[str, Any] = {"name": OUTPUT, "datatype": "BYTES", "shape": shape}
        raw = serialize_bytes([v.encode() for v in values]) if out.binary else b""
    else:
        values = probabilities.flatten().tolist()
        tensor = {"name": OUTPUT, "datatype": "FP32", "shape": list(probabilities.shape)}
        raw = probabilities.numpy().astype("<f4").tobytes() if out.binary else b""
    if out.binary:
        tensor["parameters"] = {"binary_data_size": len(raw)}
    else:
        tensor["data"] = values
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": [tensor]}
    if request.id is not None:
        body["id"] = request.id
    header = json.dumps(body).encode()
    if not out.binary:
        return header, {"Content-Type": "application/json"}
    return header + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
