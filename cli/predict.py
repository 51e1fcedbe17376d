"""`resnet-predict CHECKPOINT PATH... [--out preds.csv|preds.jsonl]`: classify image files and folders.

The same preprocessing and the same `predictions` entries (`label`, `index`, softmax `score`, best first) as
`POST /v1/predict`. A folder stands for its images (recursive, sorted); files and folders keep the order given.
CHECKPOINT is a checkpoint written by resnet-train, a bare state dict (with --arch and --class-index) or an
ONNX file written by resnet-export (run by ONNX Runtime; its classes and preprocessing travel inside it).
An unreadable image is reported on stderr (and in the --out file), the others are still predicted, and the
exit status is 1 at the end.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from models import CheckpointError, ImageError, PreprocessSpec, load_checkpoint, load_image_tensor
from models.atomic import atomic_write
from models.backends import InferenceBackend, open_backend
from models.checkpoint import read_class_index
from models.cli import run_cli
from models.device import DeviceError, resolve_device
from models.errors import ConfigError
from models.explain_render import write_explanations
from models.postprocess import top_k
from models.preprocess import IMAGE_EXTENSIONS
from training.config import HelpFormatter, non_negative_int, positive_int

OUT_FORMATS = (".csv", ".jsonl")


@dataclass
class Predictor:
    """What predicting needs: a backend (preprocessed batch -> CPU logits), its classes and its preprocessing."""

    backend: InferenceBackend
    classes: list[str]
    preprocess: PreprocessSpec


class ImageFiles(Dataset):
    """Image files decoded with the shared preprocessing; an unreadable one yields its reason instead of a tensor."""

    def __init__(self, paths: list[str], spec: PreprocessSpec) -> None:
        self.paths, self.spec = paths, spec

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return i, load_image_tensor(Path(self.paths[i]).read_bytes(), self.spec), None
        except ImageError as e:
            return i, None, str(e)
        except OSError as e:
            return i, None, e.strerror or str(e)


def collate(items: list[tuple[int, torch.Tensor | None, str | None]]) -> tuple[list[int], torch.Tensor | None,
                                                                                list[tuple[int, str]]]:
    """(indices of the decoded images, their batch or None, (index, reason) of the others)."""
    ok = [(i, x) for i, x, _ in items if x is not None]
    failed = [(i, reason) for i, x, reason in items if x is None]
    return [i for i, _ in ok], torch.stack([x for _, x in ok]) if ok else None, failed


def expand_paths(args: Iterable[str]) -> tuple[list[str], list[str]]:
    """Every argument in the order given, a folder replaced by its images (recursive, sorted); and empty folders."""
    files: list[str] = []
    empty: list[str] = []
    for arg in args:
        path = Path(arg)
        if not path.is_dir():
            files.append(arg)  # a missing or unreadable file is reported when it is read
            continue
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        files += [str(p) for p in found]
        if not found:
            empty.append(arg)
    return files, empty


def predict_rows(model: Predictor, paths: list[str], k: int, *, batch_size: int = 64, workers: int = 0,
                 progress: bool | None = False) -> Iterator[dict[str, Any]]:
    """One row per path, in order: {"path", "predictions", "error"}; errors are also said on stderr.

    `progress`: a tqdm bar on stderr; None = only when stderr is a terminal.
    """
    pin = model.backend.name == "torch" and model.backend.device.startswith("cuda")  # torch copies non-blocking
    loader = DataLoader(ImageFiles(paths, model.preprocess), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=collate, pin_memory=pin)
    with tqdm(total=len(paths), unit="img", file=sys.stderr, dynamic_ncols=True,
              disable=None if progress is None else not progress) as bar:
        for indices, batch, failed in loader:
            preds = top_k(model.backend.predict(batch), model.classes, k) if batch is not None else []
            rows = {i: {"path": paths[i], "predictions": p, "error": None} for i, p in zip(indices, preds, strict=True)}
            for i, reason in failed:
                bar.write(f"resnet-predict: {paths[i]}: cannot read image: {reason}", file=sys.stderr)
                rows[i] = {"path": paths[i], "predictions": [], "error": reason}
            yield from (rows[i] for i in sorted(rows))
            bar.update(len(rows))


def write_csv(f: IO[str], rows: Iterable[dict[str, Any]], k: int) -> int:
    """`path,label_1,score_1,...,label_k,score_k,error`; a failed image has empty labels and scores."""
    out = csv.writer(f)
    out.writerow(["path", *(f"{name}_{j}" for j in range(1, k + 1) for name in ("label", "score")), "error"])
    n = 0
    for r in rows:
        cells = [c for p in r["predictions"] for c in (p["label"], f"{p['score']:.6f}")]
        out.writerow([r["path"], *cells, *[""] * (2 * k - len(cells)), r["error"] or ""])
        n += 1
    return n


def write_jsonl(f: IO[str], rows: Iterable[dict[str, Any]]) -> int:
    """One `{"path", "predictions": [{label, index, score}], "error"}` object a line."""
    n = 0
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
        n += 1
    return n


def write_rows(path: Path, rows: Iterable[dict[str, Any]], k: int) -> int:
    """Stream `rows` into `path` (format by extension), atomically: a reader never sees half a file."""
    count = 0

    def write(raw: IO[bytes]) -> None:
        nonlocal count
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        try:
            count = write_csv(text, rows, k) if path.suffix.lower() == ".csv" else write_jsonl(text, rows)
        finally:
            text.flush()
            text.detach()  # atomic_write flushes, fsyncs and closes the file itself

    atomic_write(path, write)
    return count


def onnx_predictor(path: Path, args: argparse.Namespace, device: torch.device) -> Predictor:
    """An ONNX file written by resnet-export, on the runtime `auto` picks for it (as the service does); with
    --from-checkpoint, its sha256 must match that checkpoint's."""
    from models.backends.artifact import read_artifact

    ckpt = None
    if args.from_checkpoint:
        ckpt = load_checkpoint(args.from_checkpoint, class_index=args.class_index, arch=args.arch)
    elif args.arch:
        raise CheckpointError(f"--arch is for a bare state dict; {path} records its architecture")
    artifact = read_artifact(path, ckpt)
    if args.class_index and not args.from_checkpoint and read_class_index(args.class_index) != artifact.classes:
        raise CheckpointError(f"{args.class_index}: class index disagrees with the classes recorded in {path}")
    backend = open_backend(ckpt, artifact=path, device=device, threads=args.threads)
    return Predictor(backend, artifact.classes, artifact.preprocess)


def load_predictor(args: argparse.Namespace) -> Predictor:
    """The model CHECKPOINT names, on `--device`; `CheckpointError` (or `DeviceError`) says what is wrong."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    path = Path(args.checkpoint)
    if path.suffix.lower() == ".onnx":
        return onnx_predictor(path, args, device)
    if args.from_checkpoint:
        raise CheckpointError("--from-checkpoint goes with an .onnx CHECKPOINT")
    ckpt = load_checkpoint(path, class_index=args.class_index, arch=args.arch)
    return Predictor(open_backend(ckpt, device=device, runtime="torch"), ckpt.classes, ckpt.preprocess)


def format_text(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        lines.append(f"{r['path']}:")
        width = max(len(p["label"]) for p in r["predictions"])
        lines += [f"  {p['score']:7.2%}  {p['label']:<{width}}  (class {p['index']})" for p in r["predictions"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resnet-predict", description=__doc__.splitlines()[0], allow_abbrev=False,
                                formatter_class=HelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint written by resnet-train, a bare state dict (with --arch and "
                                      "--class-index), or an .onnx file written by resnet-export")
    p.add_argument("images", nargs="+", metavar="PATH", help="image files and folders (searched recursively for "
                   f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
    model = p.add_argument_group("model")
    model.add_argument("--class-index", default=None, help="class_indices.json that must agree with the checkpoint; "
                       "required with --arch (default: none)")
    model.add_argument("--arch", default=None, help="architecture of a bare torchvision state dict (default: none)")
    model.add_argument("--from-checkpoint", default=None, metavar="CHECKPOINT",
                       help="with an .onnx CHECKPOINT: the checkpoint it was exported from; its classes and "
                            "preprocessing are used and its sha256 must match the one the ONNX file records "
                            "(default: none, the ONNX file's own metadata)")
    output = p.add_argument_group("output")
    output.add_argument("--top-k", type=positive_int, default=5, help="predictions per image (at most the class "
                        "count)")
    output.add_argument("--out", default=None, metavar="FILE", help="write one row per image to FILE.csv (path, "
                        "label_1, score_1, ..., error) or FILE.jsonl ({path, predictions, error}) instead of "
                        "printing (default: print to stdout)")
    output.add_argument("--json", action="store_true", help='print one JSON document {"results": [{"path", '
                        '"predictions"}]} instead of text (default: off)')
    runtime = p.add_argument_group("runtime")
    runtime.add_argument("--device", default="auto", help="auto (CUDA when there is any, else the CPU), cpu, cuda "
                         "or cuda:N")
    runtime.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass")
    runtime.add_argument("--workers", type=non_negative_int, default=0, help="DataLoader processes that decode "
                         "images; 0 = decode in the main process")
    runtime.add_argument("--threads", type=non_negative_int, default=0, help="intra-op threads of torch or ONNX "
                         "Runtime; 0 = the library's default")
    output.add_argument("--explain", default=None, metavar="DIR", help="also write one PNG per image into DIR: the "
                        "Grad-CAM heatmap of its top-1 class over the crop the model saw, with a colour scale (torch "
                        "checkpoints only) (default: off)")
    runtime.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="progress bar on stderr (default: on when stderr is a terminal)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out and Path(args.out).suffix.lower() not in OUT_FORMATS:
        parser.error(f"--out {args.out}: the file name must end with {' or '.join(OUT_FORMATS)}")
    if args.out and args.json:
        parser.error("--json prints to stdout; --out writes a file: give one of them")
    return run_cli("resnet-predict", lambda: predict(args))


def predict(args: argparse.Namespace) -> int:
    """Predict every image; 1 when some image could not be read or a folder held none, else 0."""
    if args.explain and Path(args.checkpoint).suffix.lower() == ".onnx":
        raise ConfigError("--explain needs a torch checkpoint (an ONNX file has no gradients to follow)")
    try:
        model = load_predictor(args)
    except DeviceError as e:
        raise ConfigError(f"--device {args.device}: {e}") from None
    paths, empty = expand_paths(args.images)
    for folder in empty:
        print(f"resnet-predict: {folder}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})", file=sys.stderr)
    failed = 0

    def counted(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        nonlocal failed
        for r in rows:
            failed += r["error"] is not None
            yield r

    rows = counted(predict_rows(model, paths, args.top_k, batch_size=args.batch_size, workers=args.workers,
                                progress=args.progress))
    if args.out:
        try:
            n = write_rows(Path(args.out), rows, min(args.top_k, len(model.classes)))
        except OSError as e:
            raise ConfigError(f"--out {args.out}: {e.strerror or e}") from None
        print(f"resnet-predict: wrote {n} rows to {args.out} ({failed} unreadable)", file=sys.stderr)
    else:
        results = [{"path": r["path"], "predictions": r["predictions"]} for r in rows if r["error"] is None]
        if args.json:
            print(json.dumps({"results": results}, indent=2, ensure_ascii=False))
        elif results:
            print(format_text(results))
    if args.explain:
        write_heatmaps(model, paths, Path(args.explain), args.progress)
    return 1 if failed or empty else 0


def write_heatmaps(model: Predictor, paths: list[str], out_dir: Path, progress: bool | None) -> None:
    """`--explain DIR`: one Grad-CAM overlay PNG per image, on the checkpoint's torch model."""
    try:
        written = write_explanations(model.backend.model, model.preprocess, paths, out_dir, progress=progress)
    except OSError as e:
        raise ConfigError(f"--explain {out_dir}: {e.strerror or e}") from None
    print(f"resnet-predict: wrote {written} heatmaps to {out_dir}", file=sys.stderr)

if __name__ == "__main__":
    sys.exit(main())
