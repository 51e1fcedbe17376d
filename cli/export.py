"""`resnet-export CHECKPOINT [--precision fp32|bf16|int8] [-o OUT.onnx]`: the ONNX artifact the service runs.

fp32 is the exact model. int8 is static post-training quantization (ONNX Runtime's QDQ quantizer, int8
weights per output channel, uint8 activations calibrated on --calibration-data). bf16 is the fp32 graph
marked to run in bf16 on OpenVINO (natively on CPUs with AVX512_BF16/AMX). For bf16 and int8, the export
evaluates the fp32 and the low-precision model on held-out data on the runtime `auto` will serve them on and on
every other installed runtime that can run them (models.backends), records top-1 of both and their agreement
per runtime in the artifact, and refuses to write it when top-1 drops by more than --max-accuracy-drop points on
any of them (unless --force).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from cli.evaluate import build_eval_set, checkpoint_fashion_mnist_split, with_root
from models.accuracy import PRECISIONS, AccuracyRecord
from models.atomic import atomic_write_bytes
from models.backends import InferenceBackend, open_backend, resolve_runtime, runtime_available, runtimes_for
from models.checkpoint import Checkpoint, load_checkpoint
from models.cli import run_cli
from models.errors import ResNetServiceError
from models.onnx_export import INPUT_NAME, export_onnx_bytes, with_metadata
from models.quantize import CALIBRATION_METHODS
from training.config import non_negative_int, positive_int
from training.data import (
    DataError,
    ImageFolderDataset,
    collate_skip_none,
    is_fashion_mnist,
    scan_image_folder,
)

log = logging.getLogger("resnet-export")


class AccuracyGuardError(ResNetServiceError):
    """The low-precision model lost more top-1 than allowed; nothing was written."""


def _training_config(ckpt: Checkpoint) -> dict[str, Any]:
    return dict((ckpt.training or {}).get("config", {}))


def default_data(ckpt: Checkpoint) -> str | None:
    """The data the checkpoint was trained on, when its training record names it."""
    return _training_config(ckpt).get("data")


def calibration_set(data: str, ckpt: Checkpoint, size: int, seed: int) -> tuple[Dataset, str]:
    """`size` training images (never the held-out ones), seeded, through the checkpoint's own preprocessing."""
    if is_fashion_mnist(data):
        part, root = checkpoint_fashion_mnist_split(data, ckpt, "train")
        dataset: Dataset = part.dataset
        source = with_root(part.name, root)
    else:
        folder = Path(data) / "train"
        if not folder.is_dir():
            raise DataError(f"{folder}: not a directory (--calibration-data takes an ImageFolder root with train/)")
        samples, _ = scan_image_folder(folder, ckpt.classes, subset=True)
        dataset, source = ImageFolderDataset(samples, ckpt.preprocess, train=False), str(folder)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size]
    return Subset(dataset, order.tolist()), source


def batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images float32 NCHW, labels) batches; unreadable images are dropped by the collate."""
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_skip_none):
        if len(batch[0]):
            yield batch[0].numpy(), batch[1].numpy()


def predictions(backend: InferenceBackend, dataset: Dataset, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 class of every readable image of `dataset`, and its label."""
    tops, labels = [], []
    for x, y in batches(dataset, batch_size):
        tops.append(backend.predict(torch.from_numpy(x)).argmax(1).numpy())
        labels.append(y)
    if not labels:
        raise DataError("no held-out image could be read")
    return np.concatenate(tops), np.concatenate(labels)


def compare(fp32: np.ndarray, low: np.ndarray, labels: np.ndarray) -> AccuracyRecord:
    return AccuracyRecord(top1_fp32=float((fp32 == labels).mean()), top1=float((low == labels).mean()),
                      agreement=float((fp32 == low).mean()), eval_size=len(labels))


def checked_runtimes(precision: str) -> list[str]:
    """Where a `precision` artifact is scored: the runtime `auto` serves it on first, then every other installed
    runtime that can run it (so the service finds a record for whichever of them serves)."""
    serving = resolve_runtime("auto", torch.device("cpu"), precision)
    return [serving] + [r for r in runtimes_for(precision) if r != serving and runtime_available(r)]


def score(paths: dict[str, Path], precision: str, runtime: str, evaluation: Dataset,
          args: argparse.Namespace) -> AccuracyRecord:
    """The fp32 and the `precision` artifact on `runtime`, on the same held-out images."""
    tops = {}
    for name in ("fp32", precision):
        backend = open_backend(artifact=paths[name], runtime=runtime, device="cpu", threads=args.threads,
                               scoring=True)
        tops[name], labels = predictions(backend, evaluation, args.batch_size)
    return compare(tops["fp32"], tops[precision], labels)


def low_precision_bytes(fp32: bytes, args: argparse.Namespace, ckpt: Checkpoint, data: str) -> bytes:
    """The bf16 or int8 model, marked with its precision (and, for int8, how it was calibrated)."""
    if args.precision == "bf16":
        return with_metadata(fp32, {"precision": "bf16"})
    from models.quantize import quantize_int8

    calib, source = calibration_set(data, ckpt, args.calibration_size, args.seed)
    log.info("calibrating int8 on %d images of %s (%s)", len(calib), source, args.calibration_method)
    try:
        int8 = quantize_int8(fp32, (x for x, _ in batches(calib, args.batch_size)), input_name=INPUT_NAME,
                             method=args.calibration_method)
    except Exception as e:  # ORT's quantizer raises ValueError/RuntimeError/its own types, e.g. for no images
        raise DataError(f"int8 calibration on {source} failed: {type(e).__name__}: {e}") from None
    calibration = {"data": source, "size": len(calib), "method": args.calibration_method, "seed": args.seed}
    return with_metadata(int8, {"precision": "int8", "calibration": calibration})


def held_out(args: argparse.Namespace, ckpt: Checkpoint, data: str) -> tuple[Dataset, str]:
    dataset, _, source, _ = build_eval_set(args.eval_data or data, ckpt, args.eval_split)
    if args.eval_size and args.eval_size < len(dataset):
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))[:args.eval_size]
        dataset = Subset(dataset, order.tolist())
    return dataset, source


def guarded_export(ckpt: Checkpoint, args: argparse.Namespace) -> tuple[bytes, dict[str, AccuracyRecord]]:
    """The artifact's bytes, and for low precision the accuracy it passed with on each runtime that can serve it
    (raises `AccuracyGuardError` when any of them loses more than --max-accuracy-drop)."""
    fp32 = export_onnx_bytes(ckpt, opset=args.opset, dynamic_batch=not args.static_batch)
    if args.precision == "fp32":
        return fp32, {}
    if args.precision == "bf16" and not runtime_available("openvino"):
        raise DataError("--precision bf16 runs and is checked on OpenVINO: pip install 'resnet-service[openvino]'")
    data = args.calibration_data or default_data(ckpt)
    if not data:
        raise DataError("--calibration-data is needed: the checkpoint does not record what it was trained on")
    low = low_precision_bytes(fp32, args, ckpt, data)
    evaluation, source = held_out(args, ckpt, data)
    with tempfile.TemporaryDirectory(prefix="resnet-export-") as tmp:
        paths = {name: Path(tmp) / f"{name}.onnx" for name in ("fp32", args.precision)}
        paths["fp32"].write_bytes(fp32)
        paths[args.precision].write_bytes(low)
        results = {rt: score(paths, args.precision, rt, evaluation, args) for rt in checked_runtimes(args.precision)}
    for runtime, result in results.items():
        log.info("%s on %s, %s", result.line(args.precision), runtime, source)
        if result.drop_points > args.max_accuracy_drop and not args.force:
            raise AccuracyGuardError(f"{args.precision} loses too much accuracy on {runtime}: "
                                     f"{result.line(args.precision)}; allowed drop {args.max_accuracy_drop:g} points "
                                     "(--max-accuracy-drop, or --force to write it anyway); nothing written")
    props = {"accuracy_by_runtime": {rt: r.as_dict() for rt, r in results.items()}, "accuracy_data": source}
    return with_metadata(low, props), results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resnet-export", description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("checkpoint", help="checkpoint file written by resnet-train (or save_checkpoint)")
    output = p.add_argument_group("output")
    output.add_argument("-o", "--out", default=None, help="ONNX file to write (default: the checkpoint's path with "
                        ".onnx, or .int8.onnx / .bf16.onnx for low precision)")
    output.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32: exact; int8: quantized, run by ONNX Runtime or OpenVINO; bf16: run by OpenVINO "
                             "(default: %(default)s)")
    output.add_argument("--opset", type=int, default=17, help="ONNX opset version (default: %(default)s)")
    output.add_argument("--static-batch", action="store_true", help="fix the batch axis to 1 instead of a dynamic "
                        "batch size (default: dynamic)")
    calib = p.add_argument_group("calibration (int8)")
    calib.add_argument("--calibration-data", metavar="DATA", default=None,
                       help="an ImageFolder root (its train/ is read) or fashion-mnist (its training split, without "
                            "the held-out part); default: the data the checkpoint was trained on")
    calib.add_argument("--calibration-size", metavar="N", type=positive_int, default=512,
                       help="training images used to calibrate activation ranges (default: %(default)s)")
    calib.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default="minmax",
                       help="how activation ranges are set from the calibration images (default: %(default)s)")
    guard = p.add_argument_group("accuracy guard (bf16, int8)")
    guard.add_argument("--eval-data", metavar="DATA", default=None,
                       help="held-out data to compare the models on (default: the calibration data's)")
    guard.add_argument("--eval-split", choices=("val", "test"), default="val",
                       help="its split: val = an ImageFolder's val/ or Fashion-MNIST's held-out validation part; "
                            "test = the test split (default: %(default)s)")
    guard.add_argument("--eval-size", metavar="N", type=non_negative_int, default=0,
                       help="compare on a seeded sample of N images (default: all of the split)")
    guard.add_argument("--max-accuracy-drop", metavar="POINTS", type=float, default=0.5,
                       help="refuse to write when top-1 drops by more than this many percentage points "
                            "(default: %(default)s)")
    guard.add_argument("--force", action="store_true", help="write the artifact even when it fails the guard "
                       "(default: off)")
    runtime = p.add_argument_group("runtime")
    runtime.add_argument("--batch-size", type=positive_int, default=64,
                         help="images per forward pass (default: %(default)s)")
    runtime.add_argument("--threads", type=non_negative_int, default=0,
                         help="inference threads (default: 0 = one per core)")
    runtime.add_argument("--seed", type=int, default=0, help="seed of the calibration and evaluation samples "
                         "(default: %(default)s)")
    return p


def default_out(checkpoint: str, precision: str) -> Path:
    path = Path(checkpoint)
    return path.with_suffix(".onnx") if precision == "fp32" else path.with_suffix(f".{precision}.onnx")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_cli("resnet-export", lambda: export(args))


def export(args: argparse.Namespace) -> None:
    """Export, guard, and write the artifact atomically (nothing is written when the guard refuses)."""
    out = Path(args.out) if args.out else default_out(args.checkpoint, args.precision)
    ckpt = load_checkpoint(args.checkpoint)
    data, results = guarded_export(ckpt, args)
    atomic_write_bytes(out, data)
    summary = "".join(f"; {rt}: {r.line(args.precision)}" for rt, r in results.items())
    log.info("wrote %s (%s, %s, sha256 %s)%s", out, ckpt.arch, args.precision, ckpt.sha256[:12], summary)


if __name__ == "__main__":
    sys.exit(main())
