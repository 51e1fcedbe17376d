"""`resnet-predict CHECKPOINT IMAGE... [--top-k K] [--class-index F] [--json]`: classify image files.

The same preprocessing and the same `predictions` entries (`label`, `index`, softmax `score`, best first) as
`POST /v1/predict`. An unreadable image is reported on stderr, the others are still predicted, and the exit
status is 1 at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from models import Checkpoint, CheckpointError, ImageError, load_checkpoint, load_image_tensor

BATCH = 32


def top_k(logits: torch.Tensor, classes: list[str], k: int) -> list[list[dict[str, Any]]]:
    """Softmax scores of each row, the `k` best as `{"label", "index", "score"}`, sorted descending."""
    scores, indices = torch.softmax(logits.float(), dim=1).topk(min(k, len(classes)), dim=1)
    return [
        [{"label": classes[i], "index": i, "score": s} for s, i in zip(row_s.tolist(), row_i.tolist(), strict=True)]
        for row_s, row_i in zip(scores, indices, strict=True)
    ]


def predict_files(ckpt: Checkpoint, paths: list[str], k: int) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Results for the files that could be read, in the given order, and (path, reason) for the others."""
    inputs: list[tuple[str, torch.Tensor]] = []
    errors: list[tuple[str, str]] = []
    for path in paths:
        try:
            inputs.append((path, load_image_tensor(Path(path).read_bytes(), ckpt.preprocess)))
        except ImageError as e:
            errors.append((path, str(e)))
        except OSError as e:
            errors.append((path, e.strerror or str(e)))
    device = next(ckpt.model.parameters()).device
    results: list[dict[str, Any]] = []
    with torch.inference_mode():
        for start in range(0, len(inputs), BATCH):
            chunk = inputs[start : start + BATCH]
            logits = ckpt.model(torch.stack([x for _, x in chunk]).to(device))
            results += [{"path": p, "predictions": preds}
                        for (p, _), preds in zip(chunk, top_k(logits.cpu(), ckpt.classes, k), strict=True)]
    return results, errors


def format_text(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        lines.append(f"{r['path']}:")
        width = max(len(p["label"]) for p in r["predictions"])
        lines += [f"  {p['score']:7.2%}  {p['label']:<{width}}  (class {p['index']})" for p in r["predictions"]]
    return "\n".join(lines)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resnet-predict", description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("checkpoint", help="a checkpoint written by resnet-train (or a bare state dict with --arch)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top-k", type=positive_int, default=5, help="predictions per image (at most the class count)")
    p.add_argument("--class-index", default=None, help="class_indices.json that must agree with the checkpoint")
    p.add_argument("--arch", default=None, help="architecture of a bare torchvision state dict")
    p.add_argument("--json", action="store_true", help='one JSON document: {"results": [{"path", "predictions"}]}')
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint, class_index=args.class_index, arch=args.arch)
    except CheckpointError as e:
        print(f"resnet-predict: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    results, errors = predict_files(ckpt, args.images, args.top_k)
    for path, reason in errors:
        print(f"resnet-predict: {path}: cannot read image: {reason}", file=sys.stderr)
    if args.json:
        print(json.dumps({"results": results}, indent=2, ensure_ascii=False))
    elif results:
        print(format_text(results))
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
