"""`resnet-export`: a checkpoint -> an ONNX model that carries the checkpoint's metadata and sha256.

The service's ONNX Runtime backend reads the metadata back and refuses a file exported from another
checkpoint. `onnx` is imported inside the functions, so `import models` never needs it.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from models.atomic import atomic_write_bytes
from models.checkpoint import Checkpoint, load_checkpoint
from models.errors import CheckpointError

ONNX_FORMAT = "resnet-onnx/1"
INPUT_NAME, OUTPUT_NAME = "input", "logits"

log = logging.getLogger("resnet-export")


def onnx_metadata(checkpoint: Checkpoint) -> dict[str, str]:
    """What travels inside the ONNX file (metadata_props are string -> string)."""
    return {
        "format": ONNX_FORMAT,
        "arch": checkpoint.arch,
        "arch_kwargs": json.dumps(checkpoint.arch_kwargs, sort_keys=True),
        "classes": json.dumps(checkpoint.classes, ensure_ascii=False),
        "preprocess": json.dumps(checkpoint.preprocess.to_dict(), sort_keys=True),
        "checkpoint_sha256": checkpoint.sha256,
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


def export_onnx(checkpoint: Checkpoint, path: str | Path, *, opset: int = 17, dynamic_batch: bool = True) -> Path:
    """Write `checkpoint`'s model as ONNX (input NCHW float32 at the crop size, batch axis dynamic) to `path`."""
    import onnx

    spec = checkpoint.preprocess
    model = copy.deepcopy(checkpoint.model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(2 if dynamic_batch else 1, spec.channels, spec.crop, spec.crop)
    proto = onnx.load_from_string(_export_bytes(model, example, opset, dynamic_batch))
    for key, value in onnx_metadata(checkpoint).items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"{checkpoint.arch} exported from {checkpoint.path.name} (sha256 {checkpoint.sha256})"
    onnx.checker.check_model(proto)
    return atomic_write_bytes(path, proto.SerializeToString())


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata `export_onnx` embedded, with the JSON fields decoded; {} for a foreign ONNX file."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: ONNX file not found") from None
    except Exception as e:  # protobuf DecodeError and friends
        raise CheckpointError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    return decode_metadata({p.key: p.value for p in proto.metadata_props})


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """metadata_props (all strings) -> plain values; JSON fields decoded."""
    out: dict[str, Any] = dict(props)
    for key in ("arch_kwargs", "classes", "preprocess", "accuracy"):
        if key in out:
            try:
                out[key] = json.loads(out[key])
            except json.JSONDecodeError:
                raise CheckpointError(f"ONNX metadata field {key!r} is not valid JSON") from None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="resnet-export", description="Export a checkpoint to ONNX for the service.")
    parser.add_argument("checkpoint", help="checkpoint file written by resnet-train (or save_checkpoint)")
    output = parser.add_argument_group("output")
    output.add_argument("-o", "--out", default=None, help="ONNX file to write (default: the checkpoint's path with "
                        ".onnx)")
    output.add_argument("--opset", type=int, default=17, help="ONNX opset version (default: %(default)s)")
    output.add_argument("--static-batch", action="store_true", help="fix the batch axis to 1 instead of a dynamic "
                        "batch size (default: dynamic)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        sys.exit(f"resnet-export: {e}")
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(".onnx")
    export_onnx(ckpt, out, opset=args.opset, dynamic_batch=not args.static_batch)
    log.info("wrote %s (%s, sha256 %s)", out, ckpt.arch, ckpt.sha256[:12])


if __name__ == "__main__":
    main()
