"""Benchmark 1, the raw model limit: images/s of the bare model loop per batch size and runtime.

    python -m bench.model_limit --model resnet50 --threads 2

Runtimes: eager (inference_mode), channels_last, bf16 autocast (only where the CPU has native bf16,
unless --force-bf16), ONNX Runtime (the service's session options) and ONNX Runtime with spinning, and
the artifacts of `resnet-export --precision`: onnxruntime_int8, openvino (fp32), openvino_bf16, openvino_int8
(each through the service's backend class, so with its settings).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch

from bench.common import (
    artifact_path_for,
    checkpoint_path,
    median,
    onnx_path_for,
    print_table,
    time_loop,
    warn_if_busy,
    write_results,
)
from training.machine import native_bf16


def torch_runner(model: torch.nn.Module, mode: str):
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16" else contextlib.nullcontext()

    def run(x: torch.Tensor) -> torch.Tensor:
        if mode == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), cast:
            return model(x).float()

    return run


def ort_runner(ckpt, onnx_path: Path, threads: int, spinning: bool):
    # The spinning knob is a measurement of ONNX Runtime itself, not a serving choice: built directly, not through
    # models.backends.open_backend (which serves with spinning off).
    from models.backends.artifact import read_artifact
    from models.backends.onnx_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(read_artifact(onnx_path, ckpt), threads=threads, device="cpu",
                                 allow_spinning=spinning)
    return backend.predict


def artifact_runner(ckpt, ckpt_path: Path, mode: str, threads: int):
    """`onnxruntime_int8`, `openvino`, `openvino_bf16`, `openvino_int8`: the service's backend on that artifact."""
    from models.backends import open_backend

    runtime, _, precision = mode.partition("_")
    path = artifact_path_for(ckpt_path, precision or "fp32")
    return open_backend(ckpt, artifact=path, runtime=runtime, device="cpu", threads=threads).predict


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet50", help="checkpoint file, 'default', or an architecture[@size]")
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (torch and ORT)")
    p.add_argument("--seconds", type=float, default=4.0, help="time per (runtime, batch size) point")
    p.add_argument("--modes", default="eager,channels_last,bf16,onnxruntime,onnxruntime_spin")
    p.add_argument("--force-bf16", action="store_true", help="measure bf16 even without native CPU support")
    p.add_argument("--name", default=None, help="result file name (default: model_limit_<model>)")
    args = p.parse_args(argv)

    import models

    warn_if_busy()
    torch.set_num_threads(args.threads)
    ckpt_path = checkpoint_path(args.model)
    ckpt = models.load_checkpoint(ckpt_path)
    spec = ckpt.preprocess
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    modes = args.modes.split(",")
    skipped = {}
    if "bf16" in modes and not (native_bf16(torch.device("cpu")) or args.force_bf16):
        modes.remove("bf16")
        skipped["bf16"] = "CPU has no avx512_bf16/amx_bf16: autocast would emulate bf16 (slower); --force-bf16"
    onnx_path = onnx_path_for(ckpt_path) if any(m.startswith("onnxruntime") for m in modes) else None

    rows = []
    for mode in modes:
        if mode in ("onnxruntime_int8", "openvino", "openvino_bf16", "openvino_int8"):
            run = artifact_runner(ckpt, ckpt_path, mode, args.threads)
        elif mode.startswith("onnxruntime"):
            run = ort_runner(ckpt, onnx_path, args.threads, spinning=mode.endswith("spin"))
        else:
            run = torch_runner(models.load_checkpoint(ckpt_path).model, mode)
        for n in sizes:
            x = torch.randn(n, spec.channels, spec.crop, spec.crop)
            times = time_loop(lambda x=x, run=run: run(x), seconds=args.seconds)
            t = median(times)
            rows.append({"runtime": mode, "batch": n, "ms_per_batch": t * 1e3, "ms_per_image": t * 1e3 / n,
                         "images_per_s": n / t, "iters": len(times)})
            print(f"{mode:>16} batch {n:3d}: {n / t:8.1f} img/s  ({t * 1e3:.1f} ms/batch, {len(times)} iters)",
                  flush=True)

    by_mode = {m: {r["batch"]: r["images_per_s"] for r in rows if r["runtime"] == m} for m in modes}
    table = [{"batch": n, **{m: by_mode[m].get(n) for m in modes}} for n in sizes]
    title = f"{ckpt.arch} {spec.channels}x{spec.crop}x{spec.crop}, {args.threads} threads: images/s"
    print_table(table, ["batch", *modes], title)
    best = max(rows, key=lambda r: r["images_per_s"])
    eager1 = by_mode.get("eager", {}).get(1)
    ratios = {m: by_mode[m][1] / eager1 for m in modes if eager1 and 1 in by_mode[m]}
    print(f"best: {best['runtime']} at batch {best['batch']}: {best['images_per_s']:.1f} img/s; "
          f"batch-1 speed vs eager: {', '.join(f'{m} {r:.2f}x' for m, r in ratios.items())}")
    write_results(args.name or f"model_limit_{ckpt.arch}_{spec.crop}", {
        "benchmark": "model_limit", "checkpoint": str(ckpt_path), "arch": ckpt.arch, "input": [spec.channels,
        spec.crop, spec.crop], "threads": args.threads, "skipped": skipped, "rows": rows, "best": best,
        "batch1_vs_eager": ratios,
    })


if __name__ == "__main__":
    main()
