"""A checkpoint -> an ONNX model that carries the checkpoint's metadata, sha256 and precision.

The service's ONNX backends read the metadata back and refuse a file exported from another checkpoint.
`resnet-export` (cli/export.py) writes these files, in fp32, bf16 or int8. `onnx` is imported inside
the functions, so `import models` never needs it.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from models.atomic import atomic_write_bytes
from models.checkpoint import Checkpoint
from models.errors import CheckpointError

ONNX_FORMAT = "resnet-onnx/1"
INPUT_NAME, OUTPUT_NAME = "input", "logits"
_JSON_FIELDS = ("arch_kwargs", "classes", "preprocess", "accuracy", "accuracy_by_runtime", "calibration")


def onnx_metadata(checkpoint: Checkpoint, precision: str = "fp32") -> dict[str, str]:
    """What travels inside the ONNX file (metadata_props are string -> string)."""
    return {
        "format": ONNX_FORMAT,
        "arch": checkpoint.arch,
        "arch_kwargs": json.dumps(checkpoint.arch_kwargs, sort_keys=True),
        "classes": json.dumps(checkpoint.classes, ensure_ascii=False),
        "preprocess": json.dumps(checkpoint.preprocess.to_dict(), sort_keys=True),
        "checkpoint_sha256": checkpoint.sha256,
        "precision": precision,
        "torch_version": str(torch.__version__),
    }


def _export_bytes(model: torch.nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool) -> bytes:
    buf = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated upstream but is stable, quick (~1 s for resnet50) and
        # gives ORT a graph as fast as the dynamo one; the strided Slice of shortcut A only warns.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True)
    return buf.getvalue()


def export_onnx_bytes(checkpoint: Checkpoint, *, opset: int = 17, dynamic_batch: bool = True) -> bytes:
    """`checkpoint`'s model as a serialized fp32 ONNX model (NCHW float32 at the crop size) with its metadata."""
    spec = checkpoint.preprocess
    model = copy.deepcopy(checkpoint.model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(2 if dynamic_batch else 1, spec.channels, spec.crop, spec.crop)
    doc = f"{checkpoint.arch} exported from {checkpoint.path.name} (sha256 {checkpoint.sha256})"
    return with_metadata(_export_bytes(model, example, opset, dynamic_batch), onnx_metadata(checkpoint), doc=doc)


def with_metadata(data: bytes, props: dict[str, Any], *, doc: str | None = None) -> bytes:
    """`data` (a serialized ONNX model) with `props` set in its metadata (dicts and lists as JSON), checked."""
    import onnx

    proto = onnx.load_from_string(data)
    merged = {p.key: p.value for p in proto.metadata_props}
    merged.update({k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in props.items()})
    del proto.metadata_props[:]
    for key, value in merged.items():
        proto.metadata_props.add(key=key, value=value)
    if doc is not None:
        proto.doc_string = doc
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def export_onnx(checkpoint: Checkpoint, path: str | Path, *, opset: int = 17, dynamic_batch: bool = True) -> Path:
    """Write `checkpoint`'s model as fp32 ONNX (input NCHW float32 at the crop size, batch axis dynamic) to `path`."""
    return atomic_write_bytes(path, export_onnx_bytes(checkpoint, opset=opset, dynamic_batch=dynamic_batch))


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata `export_onnx` embedded, with the JSON fields decoded; {} for a foreign ONNX file.

    Parsing means reading the whole protobuf (~100 MB for resnet50), and backend choice, the sha256 check and the
    backend itself each ask, so one parse per file version (path, size, mtime) is kept; callers get a copy.
    """
    try:
        stat = Path(path).stat()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: ONNX file not found") from None
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    return copy.deepcopy(_parsed_metadata(str(path), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _parsed_metadata(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    import onnx

    try:
        proto = onnx.load(path, load_external_data=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: ONNX file not found") from None
    except Exception as e:  # protobuf DecodeError and friends
        raise CheckpointError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    return decode_metadata({p.key: p.value for p in proto.metadata_props})


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """metadata_props (all strings) -> plain values; JSON fields decoded."""
    out: dict[str, Any] = dict(props)
    for key in _JSON_FIELDS:
        if key in out:
            try:
                out[key] = json.loads(out[key])
            except json.JSONDecodeError:
                raise CheckpointError(f"ONNX metadata field {key!r} is not valid JSON") from None
    return out
