"""Where the service's CPU time goes under load: py-spy samples of the real server, grouped by stage.

    python -m bench.profile_service --model default --image fmnist --concurrency 16

Starts the service (as bench.load_test does), drives it with the closed-loop load generator and,
meanwhile, samples every thread of the server with `py-spy record --format raw` (py-spy is a dev
dependency). Each sampled stack is put in the first stage whose marker it contains; the table gives the
share of busy samples per stage. Native code (ONNX Runtime, libjpeg) is counted in the Python frame
that called it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.common import IMAGES, ROOT, WORKDIR, checkpoint_path, image_bytes, print_table, warn_if_busy, write_results
from bench.load_test import Server, closed_loop

# (stage, markers): the first stage with a marker in the stack gets the sample.
WAITS = ("EpollSelector.select", "Condition.wait", "_worker (concurrent/futures")  # blocked, yet sampled
STAGES = [
    ("inference (forward pass)", ("_run_batch",)),
    ("decode + preprocess", ("load_image_tensor",)),
    ("batcher: gather/wait", ("_gather", "predictor.py")),
    ("multipart parsing", ("multipart",)),
    ("HTTP protocol (uvicorn/h11)", ("h11", "uvicorn/protocols")),
    ("JSON + response models (pydantic)", ("pydantic", "json/encoder", "jsonable_encoder", "render (")),
    ("routing, middleware, deps (starlette/fastapi)", ("starlette", "fastapi", "app/api")),
    ("service code (app/services)", ("app/services",)),
    ("asyncio event loop (sockets, callbacks)", ("asyncio",)),
]


def stage_of(stack: str) -> str:
    if stack.rsplit(";", 1)[-1].startswith(WAITS):
        return "waiting (select, condition, idle pool worker)"
    for stage, markers in STAGES:
        if any(m in stack for m in markers):
            return stage
    return "other"


def parse_raw(path: Path) -> tuple[Counter, Counter]:
    """py-spy raw output -> samples per stage, and self samples per leaf function."""
    stages: Counter = Counter()
    leaves: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stages[stage_of(stack)] += int(count)
        leaves[stack.rsplit(";", 1)[-1]] += int(count)
    return stages, leaves


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="checkpoint file, 'default', or an architecture[@size]")
    p.add_argument("--image", default="fmnist", choices=sorted(IMAGES))
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--env", action="append", default=[], metavar="RESNET_X=V")
    p.add_argument("--raw", type=Path, default=None, help="only re-read this py-spy raw file (no new run)")
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)
    if args.raw:
        report(*parse_raw(args.raw), None, args, args.raw)
        return

    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    warn_if_busy()
    ckpt_path = checkpoint_path(args.model)
    data = image_bytes(args.image)
    ext = "png" if data[:4] == b"\x89PNG" else "jpeg"
    server = Server(args.backend, ckpt_path, dict(kv.split("=", 1) for kv in args.env))
    raw = WORKDIR / "profiles" / f"{args.backend}-{args.image}-c{args.concurrency}.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    try:
        server.wait_ready()
        spy = subprocess.Popen([py_spy, "record", "--pid", str(server.proc.pid), "--rate", str(args.rate),
                                "--duration", str(int(args.seconds) + 2), "--format", "raw", "--threads",
                                "--nonblocking", "--output", str(raw)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        time.sleep(1.0)  # py-spy attaches
        load = asyncio.run(closed_loop(server.url + "/v1/predict", (f"image.{ext}", data, f"image/{ext}"),
                                       concurrency=args.concurrency, warmup=0.5, seconds=args.seconds,
                                       pid=server.proc.pid))
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0 or not raw.exists():
            raise SystemExit(f"py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-500:]}")
    finally:
        server.stop()

    report(*parse_raw(raw), load, args, raw)


def report(stages: Counter, leaves: Counter, load: dict | None, args: argparse.Namespace, raw: Path) -> None:
    total = sum(stages.values()) or 1
    rows = [{"stage": s, "samples": n, "share_pct": 100 * n / total} for s, n in stages.most_common()]
    under = f", {load['requests_per_s']:.0f} req/s, server CPU {load['server_cpu_cores']:.2f} cores" if load else ""
    print_table(rows, ["stage", "samples", "share_pct"],
                f"service ({args.backend}) samples by stage, c={args.concurrency}{under}")
    top = [{"function": f, "self_pct": 100 * n / total} for f, n in leaves.most_common(15)]
    print_table(top, ["function", "self_pct"], "top self time (leaf Python frame)")
    write_results(args.name or f"profile_{args.backend}_{args.image}_c{args.concurrency}", {
        "benchmark": "profile_service", "backend": args.backend, "load": load, "stages": rows, "top_self": top,
        "raw_profile": str(raw), "root": str(ROOT),
    })


if __name__ == "__main__":
    main()
