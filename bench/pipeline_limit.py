"""Benchmark 2, the pipeline limit: decode + preprocess + inference in one process, no HTTP.

    python -m bench.pipeline_limit --model resnet50 --image photo

Decode threads turn the same encoded image into model inputs (`models.load_image_tensor`, as the
service does) while the main thread runs batches of B through the backend; a sweep over backend,
batch size, intra-op threads and decode threads finds the best split. The best row is the ceiling the
service is held against (bench.load_test).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import torch

from bench.common import IMAGES, checkpoint_path, image_bytes, onnx_path_for, print_table, warn_if_busy, write_results


def make_backend(name: str, ckpt_path, threads: int, cache: dict):
    """predict(batch) for 'torch' (eager, inference_mode), 'torch_cl' (channels_last) or 'onnxruntime'."""
    import models

    torch.set_num_threads(threads)
    key = (name, threads if name == "onnxruntime" else 0)
    if key in cache:
        return cache[key]
    ckpt = models.load_checkpoint(ckpt_path)
    if name == "onnxruntime":
        from models.backends import open_backend

        predict = open_backend(ckpt, artifact=onnx_path_for(ckpt_path), runtime="onnxruntime", device="cpu",
                               threads=threads).predict
    else:
        model = ckpt.model.eval()
        cl = name == "torch_cl"
        if cl:
            model = model.to(memory_format=torch.channels_last)

        def predict(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return model(x.contiguous(memory_format=torch.channels_last) if cl else x)

    cache[key] = predict
    return predict


def run_pipeline(predict, data: bytes, spec, *, batch: int, decode_threads: int, seconds: float) -> dict:
    """Images/s of decode -> batch -> predict -> top-1, with decoding overlapped with inference."""
    from models import load_image_tensor

    with ThreadPoolExecutor(decode_threads) as pool:
        pending: deque = deque()

        def refill() -> None:
            while len(pending) < 2 * batch + decode_threads:
                pending.append(pool.submit(load_image_tensor, data, spec))

        def step() -> int:
            refill()
            xs = [pending.popleft().result() for _ in range(batch)]
            refill()
            predict(torch.stack(xs)).argmax(1)
            return batch

        for _ in range(2):  # warm-up: thread pools, allocator, ORT arenas
            step()
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            done += step()
        elapsed = time.perf_counter() - t0
        for f in pending:
            f.cancel()
    return {"images": done, "seconds": elapsed, "images_per_s": done / elapsed}


def run_serial(predict, data: bytes, spec, *, seconds: float) -> dict:
    """One thread: decode, preprocess, predict, one image at a time (what a naive handler does)."""
    from models import load_image_tensor

    def one() -> None:
        predict(load_image_tensor(data, spec)[None]).argmax(1)

    for _ in range(2):
        one()
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        one()
        done += 1
    elapsed = time.perf_counter() - t0
    return {"images": done, "seconds": elapsed, "images_per_s": done / elapsed}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet50", help="checkpoint file, 'default', or an architecture[@size]")
    p.add_argument("--image", default="photo", choices=sorted(IMAGES))
    p.add_argument("--backends", default="torch,torch_cl,onnxruntime")
    p.add_argument("--batch-sizes", default="1,4,8,16")
    p.add_argument("--threads", default="1,2", help="intra-op thread counts to try")
    p.add_argument("--decode-threads", default="1,2", help="decode thread counts to try")
    p.add_argument("--seconds", type=float, default=5.0, help="time per configuration")
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)

    import models

    warn_if_busy()
    ckpt_path = checkpoint_path(args.model)
    ckpt = models.load_checkpoint(ckpt_path)
    spec, data = ckpt.preprocess, image_bytes(args.image)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    cache: dict = {}
    rows = []
    for backend, threads in itertools.product(args.backends.split(","), ints(args.threads)):
        predict = make_backend(backend, ckpt_path, threads, cache)
        r = run_serial(predict, data, spec, seconds=args.seconds)
        rows.append({"backend": backend, "threads": threads, "decode_threads": 0, "batch": 1, "mode": "serial", **r})
        print(f"{backend:>12} threads {threads} serial                  : {r['images_per_s']:7.1f} img/s", flush=True)
        for batch, dthreads in itertools.product(ints(args.batch_sizes), ints(args.decode_threads)):
            torch.set_num_threads(threads)
            r = run_pipeline(predict, data, spec, batch=batch, decode_threads=dthreads, seconds=args.seconds)
            rows.append({"backend": backend, "threads": threads, "decode_threads": dthreads, "batch": batch,
                         "mode": "overlapped", **r})
            print(f"{backend:>12} threads {threads} decode {dthreads} batch {batch:3d}: {r['images_per_s']:7.1f} img/s",
                  flush=True)

    rows.sort(key=lambda r: -r["images_per_s"])
    title = f"{ckpt.arch} {spec.channels}x{spec.crop}x{spec.crop}, image {args.image}: decode+preprocess+inference"
    print_table(rows[:12], ["backend", "threads", "decode_threads", "batch", "mode", "images_per_s"], title)
    best = rows[0]
    best_by_backend = {b: max((r for r in rows if r["backend"] == b), key=lambda r: r["images_per_s"])
                       for b in args.backends.split(",")}
    print(f"pipeline limit: {best['images_per_s']:.1f} img/s ({best['backend']}, {best['threads']} intra-op threads, "
          f"{best['decode_threads']} decode threads, batch {best['batch']})")
    write_results(args.name or f"pipeline_limit_{ckpt.arch}_{spec.crop}_{args.image}", {
        "benchmark": "pipeline_limit", "checkpoint": str(ckpt_path), "arch": ckpt.arch, "image": args.image,
        "image_bytes": len(data), "best": best, "best_by_backend": best_by_backend, "rows": rows,
    })


if __name__ == "__main__":
    main()
