"""One process or several: `resnet-serve --workers 1` against `--workers N`, the cores split between them.

    python -m bench.workers                      # default model and resnet50@224, c=1 and c=16, 15 s per cell
    python -m bench.workers --quick              # ~3 s per cell, a smoke run (numbers not worth keeping)

Each layout is a `resnet-serve` process on 127.0.0.1 (bench/load_test.py's `Server`) with RESNET_WORKERS and
RESNET_TORCH_THREADS = cores / workers (2 cores: 1 worker x 2 threads vs 2 workers x 1 thread), started once
per model and waited for until every worker serves; the same closed-loop clients as bench.load_test
(`closed_loop`: N clients, each sending the next image when the last answer came back) run at each concurrency.
One image per request, so throughput is images/s. The default model gets a Fashion-MNIST test image from
examples/, resnet50@224 (random weights) a 640x480 JPEG photo. Writes bench/results/workers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time

import httpx

from bench.common import ROOT, checkpoint_path, image_bytes, print_table, warn_if_busy, write_results
from bench.load_test import Server, closed_loop

EXAMPLE = ROOT / "examples" / "sneaker.png"
LIVE_WORKER = re.compile(r'^resnet_model_info\{[^}]*pid="\d+"[^}]*\} 1\.0$', re.M)


def upload_for(model: str) -> tuple[str, bytes, str]:
    """The default (Fashion-MNIST) model gets a test image from examples/, any other the bench's 640x480 photo."""
    if model == "default":
        return EXAMPLE.name, EXAMPLE.read_bytes(), "image/png"
    return "photo.jpg", image_bytes("photo"), "image/jpeg"


def wait_all_workers(server: Server, workers: int, timeout: float = 300) -> None:
    """/health/ready answers once one worker is up; wait until all `workers` report their model."""
    end = time.monotonic() + timeout
    while workers > 1 and len(LIVE_WORKER.findall(httpx.get(f"{server.url}/metrics").text)) < workers:
        if time.monotonic() > end:
            raise SystemExit(f"only some of {workers} workers started; see {server.log_path}")
        time.sleep(0.3)


def layouts(cores: int, counts: list[int]) -> list[tuple[int, int]]:
    """(workers, torch threads each) for each worker count, the cores split evenly."""
    return [(n, max(1, cores // n)) for n in counts]


def measure(model: str, backend: str, workers: int, threads: int, levels: list[int], warmup: float,
            seconds: float) -> list[dict]:
    ckpt = checkpoint_path(model)
    upload = upload_for(model)
    server = Server(backend, ckpt, {"RESNET_WORKERS": str(workers), "RESNET_TORCH_THREADS": str(threads)})
    rows = []
    try:
        server.wait_ready()
        wait_all_workers(server, workers)
        for c in levels:
            r = asyncio.run(closed_loop(server.url + server.predict_path, upload, concurrency=c, warmup=warmup,
                                        seconds=seconds, pid=server.proc.pid))
            rows.append({"model": model, "workers": workers, "torch_threads": threads, "concurrency": c,
                         "images_per_s": r["requests_per_s"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                         "statuses": r["statuses"], "mean_batch": r["mean_batch"]})
            print(f"{model:>14} workers={workers} threads={threads} c={c:3d}: {r['requests_per_s']:7.1f} img/s  "
                  f"p50 {r['p50_ms']:7.1f}  p99 {r['p99_ms']:7.1f} ms  {r['statuses']}", flush=True)
    finally:
        server.stop()
    return rows


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each row's throughput over the one-worker row of the same model and concurrency."""
    one = {(r["model"], r["concurrency"]): r["images_per_s"] for r in rows if r["workers"] == 1}
    return [{**r, "vs_1_worker": r["images_per_s"] / one[(r["model"], r["concurrency"])]
             if one.get((r["model"], r["concurrency"])) else None} for r in rows]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="default,resnet50@224",
                   help="comma list of 'default', architecture[@size] or checkpoint files (default: %(default)s)")
    p.add_argument("--workers", default="1,2", help="worker counts to compare (default: %(default)s)")
    p.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)),
                   help="cores split among the workers as RESNET_TORCH_THREADS (default: the usable ones, %(default)s)")
    p.add_argument("--concurrency", default="1,16", help="closed-loop clients (default: %(default)s)")
    p.add_argument("--backend", default="torch", help="RESNET_BACKEND of the servers (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=15.0, help="measured window per cell (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=4.0,
                   help="unmeasured load before each window (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 3 s windows after 1 s of warm-up")
    p.add_argument("--name", default=None, help="result file name (default: workers, or workers_quick)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup = 3.0, 1.0

    warn_if_busy()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = []
    for model in args.models.split(","):
        for workers, threads in layouts(args.cores, [int(n) for n in args.workers.split(",")]):
            rows += measure(model, args.backend, workers, threads, levels, args.warmup, args.seconds)
    rows = with_ratios(rows)
    title = f"resnet-serve --workers N on {args.cores} cores ({args.backend}): closed loop, {args.seconds:g} s per cell"
    print_table([{**r, "statuses": " ".join(f"{k}:{v}" for k, v in r["statuses"].items())} for r in rows],
                ["model", "workers", "torch_threads", "concurrency", "images_per_s", "vs_1_worker", "p50_ms",
                 "p99_ms", "mean_batch", "statuses"], title)
    write_results(args.name or ("workers_quick" if args.quick else "workers"), {
        "benchmark": "workers", "models": {m: str(checkpoint_path(m)) for m in args.models.split(",")},
        "backend": args.backend, "cores": args.cores, "seconds": args.seconds, "warmup": args.warmup,
        "example_image": str(EXAMPLE.relative_to(ROOT)), "rows": rows,
    })


if __name__ == "__main__":
    main()
