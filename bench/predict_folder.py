"""Benchmark: `resnet-predict` over a folder of photos against the raw decode + model limit of the same process.

    python -m bench.predict_folder --model resnet50 --images 2000

Makes (once, under $RESNET_BENCH_DIR, by default /tmp/resnet-bench) a folder of N photo-sized JPEGs with
photo-like content, so that decoding costs what it costs on real photos. Then, one after the other:
  - decode only: `load_image_tensor` on each file (read included), a plain loop in this process;
  - model only: the forward pass on batches of --batch-size (random input of the crop size);
  - decode + model: a tight loop doing both, batch by batch (no DataLoader, no output file), and the
    same from the two rates above, 1 / (1 / decode + 1 / model);
  - `resnet-predict CHECKPOINT FOLDER --out preds.jsonl` (its `main`, in this process: checkpoint load, folder
    scan, DataLoader, forward, writing the file; not the interpreter's start-up) for each of --workers.
The ratio is resnet-predict's images/s over the tight loop's: 1.0 = no overhead; above 1 with workers, where
decoding in parallel beats the single-process loop.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from bench.common import (
    WORKDIR,
    checkpoint_path,
    median,
    photo_like,
    print_table,
    time_loop,
    warn_if_busy,
    write_results,
)
from devkit.images import encode


def photo_folder(n: int, width: int, height: int, quality: int) -> Path:
    """N JPEGs (photo-like, each different) in 10 sub-folders; missing files are made, existing ones reused."""
    root = WORKDIR / "predict_folder" / f"{width}x{height}-q{quality}-n{n}"
    made = 0
    for i in range(n):
        path = root / f"{i % 10:02d}" / f"img_{i:05d}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")  # not an image extension: a half-written file is never listed
        tmp.write_bytes(encode(photo_like(width, height, seed=1000 + i), "JPEG", quality=quality))
        os.replace(tmp, path)
        made += 1
    print(f"{root}: {n} images ({made} made now)", flush=True)
    return root


def decode_rate(files: list[Path], spec) -> float:
    """Images/s of the shared decode + preprocess path, file read included, one process."""
    from models import load_image_tensor

    t0 = time.perf_counter()
    for f in files:
        load_image_tensor(f.read_bytes(), spec)
    return len(files) / (time.perf_counter() - t0)


def model_rate(model: torch.nn.Module, spec, batch: int, device: torch.device, seconds: float) -> float:
    """Images/s of the forward pass alone on batches of `batch`."""
    x = torch.randn(batch, spec.channels, spec.crop, spec.crop, device=device)

    def step() -> None:
        with torch.inference_mode():
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return batch / median(time_loop(step, seconds=seconds, min_iters=3, warmup=1))


def tight_loop_rate(files: list[Path], model: torch.nn.Module, spec, batch: int, device: torch.device) -> float:
    """Images/s of decode + forward batch by batch in one process: what resnet-predict does, minus everything else."""
    from models import load_image_tensor

    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(files), batch):
            x = torch.stack([load_image_tensor(f.read_bytes(), spec) for f in files[start : start + batch]])
            model(x.to(device)).float().cpu()
    return len(files) / (time.perf_counter() - t0)


def predict_rate(ckpt_path: Path, folder: Path, n: int, args: argparse.Namespace, workers: int) -> float:
    """Images/s of `resnet-predict` (its main, in this process) over `folder`, writing a JSONL file."""
    from training import predict

    with tempfile.TemporaryDirectory(prefix="predict-folder-") as tmp:
        argv = [str(ckpt_path), str(folder), "--out", str(Path(tmp) / "preds.jsonl"), "--no-progress",
                "--batch-size", str(args.batch_size), "--workers", str(workers), "--device", args.device,
                "--threads", str(args.threads)]
        t0 = time.perf_counter()
        try:
            predict.main(argv)
        except SystemExit as e:
            if e.code:
                raise SystemExit(f"resnet-predict {' '.join(argv)} failed (exit {e.code})") from None
        return n / (time.perf_counter() - t0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet50", help="checkpoint file, 'default' (weights/model.pt) or an "
                   "architecture[@size] with random weights (default: %(default)s)")
    p.add_argument("--images", type=int, default=2000, help="number of JPEGs in the folder (default: %(default)s)")
    p.add_argument("--size", default="640x480", help="photo size WxH (default: %(default)s)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: %(default)s)")
    p.add_argument("--workers", default="2,0", help="resnet-predict --workers values to measure (default: "
                   "%(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 = torch's default "
                   "(default: %(default)s)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=5.0, help="time spent measuring the model alone "
                   "(default: %(default)s)")
    p.add_argument("--name", default=None, help="result file bench/results/NAME.json (default: "
                   "predict_folder_<arch>_<crop>)")
    p.add_argument("--no-results", action="store_true", help="print the table only, write no result file "
                   "(for smoke runs; default: write it)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from models import load_checkpoint
    from models.device import resolve_device

    warn_if_busy()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    folder = photo_folder(args.images, width, height, args.quality)
    files = sorted(p for p in folder.rglob("*.jpg"))[: args.images]
    ckpt_path = checkpoint_path(args.model)
    ckpt = load_checkpoint(ckpt_path)
    device = resolve_device(args.device)
    model, spec = ckpt.model.to(device).eval(), ckpt.preprocess
    decode = decode_rate(files, spec)
    forward = model_rate(model, spec, args.batch_size, device, args.seconds)
    tight = tight_loop_rate(files, model, spec, args.batch_size, device)
    rows = [
        {"run": "decode only (load_image_tensor loop)", "images_per_s": decode},
        {"run": f"model only (batch {args.batch_size})", "images_per_s": forward},
        {"run": "decode + model, 1/(1/decode + 1/model)", "images_per_s": 1 / (1 / decode + 1 / forward)},
        {"run": "decode + model, tight loop", "images_per_s": tight},
    ]
    for w in (int(v) for v in args.workers.split(",")):
        rows.append({"run": f"resnet-predict --workers {w}", "images_per_s": predict_rate(ckpt_path, folder,
                                                                                           len(files), args, w)})
    for r in rows:
        r["vs_tight_loop"] = r["images_per_s"] / tight
    title = (f"{ckpt.arch} {spec.channels}x{spec.crop}x{spec.crop} on {device}, {len(files)} JPEGs {args.size} "
             f"q{args.quality}, batch {args.batch_size}, {torch.get_num_threads()} torch threads: images/s")
    print_table(rows, ["run", "images_per_s", "vs_tight_loop"], title)
    if not args.no_results:
        write_results(args.name or f"predict_folder_{ckpt.arch}_{spec.crop}", {
            "benchmark": "predict_folder", "checkpoint": str(ckpt_path), "arch": ckpt.arch, "device": str(device),
            "images": len(files), "size": args.size, "quality": args.quality, "batch_size": args.batch_size,
            "threads": torch.get_num_threads(), "rows": rows,
        })


if __name__ == "__main__":
    main()
