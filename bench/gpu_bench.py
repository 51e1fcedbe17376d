"""The GPU benchmark: resnet50 at 224x224 on one CUDA device, the bare model and the service, in one run.

    python -m bench.gpu_bench --out bench/results/gpu-20261205     (bench/gpu_check.sh runs it)

Model rows: `models.create_model("resnet50")` with random weights in eval mode, a random input batch already on
the GPU, `torch.inference_mode()`, cudnn.benchmark on; per batch size and mode (fp32 eager, channels_last, bf16
autocast, bf16 autocast + channels_last) the median of --repeats timings of a run of forward passes between CUDA
events, after warm-up. Service rows: `resnet-serve` with RESNET_BACKEND=torch and RESNET_DEVICE=cuda on a
random-weight resnet50 checkpoint, loaded by bench.load_test's closed-loop clients (the same photo-sized JPEG
again and again); its batch-size histogram is read from /metrics afterwards.
Writes gpu_bench.json (machine, GPU, versions, every row) and gpu_bench.md (the tables) in --out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/gpu_bench.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import IMAGES, checkpoint_path, image_bytes, machine_info, median, print_table
from bench.load_test import Server, closed_loop

MODES = ("fp32", "channels_last", "bf16", "bf16_channels_last")
NO_CUDA_EXIT = 3  # what bench/gpu_check.sh passes on: "no CUDA device: ..."
SETUP_EXIT = 2


def cuda_problem() -> str | None:
    """Why this process cannot use a CUDA device, in one line; None when it can."""
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} in {sys.executable} is a CPU-only build"
    if not torch.cuda.is_available():
        return (f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    return None


def gpu_info() -> dict[str, Any]:
    """The device, driver and library versions this run used."""
    import torch

    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True, check=False) if shutil.which("nvidia-smi") else None
    props = torch.cuda.get_device_properties(0)
    return {
        "nvidia_smi": smi.stdout.strip() if smi and smi.returncode == 0 else None,
        "device": torch.cuda.get_device_name(0), "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        "memory_gib": round(props.total_memory / 2**30, 1), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def check() -> int:
    """`--check`: say whether this Python can run the GPU check (CUDA, then the project's imports); an exit code."""
    try:
        problem = cuda_problem()
    except ImportError as e:
        print(f"setup: {sys.executable} has no torch: {e}", file=sys.stderr)
        return SETUP_EXIT
    if problem:
        print(f"no CUDA device: {problem}", file=sys.stderr)
        return NO_CUDA_EXIT
    try:
        import pytest  # noqa: F401

        import app.main  # noqa: F401  (the service and its dependencies)
        import training.train  # noqa: F401
    except ImportError as e:
        print(f"setup: {sys.executable} cannot import what the check needs: {e}", file=sys.stderr)
        return SETUP_EXIT
    print(json.dumps(gpu_info()))
    return 0


# ---------------------------------------------------------------- the bare model

def forward_runner(model, mode: str):
    """One forward pass in `mode` as a function of the input batch (channels_last models take NHWC inputs)."""
    import torch

    channels_last = mode.endswith("channels_last")
    model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    cast = torch.autocast("cuda", dtype=torch.bfloat16) if mode.startswith("bf16") else contextlib.nullcontext()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), cast:
            return model(x)

    return run, channels_last


def time_forward(run, x, *, seconds: float, repeats: int, warmup: int = 3) -> tuple[float, int]:
    """Median seconds per forward pass over `repeats` runs of passes timed with CUDA events; passes per run."""
    import torch

    for _ in range(warmup):  # includes cudnn.benchmark's search for this shape
        run(x)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run(x)
    end.record()
    end.synchronize()
    once = start.elapsed_time(end) / 1e3
    iters = max(3, min(1000, int(seconds / repeats / max(once, 1e-6))))
    times = []
    for _ in range(repeats):
        start.record()
        for _ in range(iters):
            run(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / iters)
    return median(times), iters


def model_rows(batch_sizes: list[int], modes: list[str], *, size: int, seconds: float, repeats: int) -> list[dict]:
    """images/s of resnet50 (random weights) on GPU 0 for each mode and batch size."""
    import torch

    from models import create_model

    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    rows = []
    for mode in modes:
        run, channels_last = forward_runner(create_model("resnet50").eval().cuda(), mode)
        for n in batch_sizes:
            x = torch.randn(n, 3, size, size, device="cuda")
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            t, iters = time_forward(run, x, seconds=seconds, repeats=repeats)
            rows.append({"mode": mode, "batch": n, "ms_per_batch": t * 1e3, "images_per_s": n / t, "iters": iters})
            print(f"{mode:>18} batch {n:3d}: {n / t:9.1f} img/s  ({t * 1e3:.2f} ms/batch, {repeats} x {iters})",
                  flush=True)
        del run
        torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------- the service

def batch_histogram(metrics_text: str) -> dict[str, int]:
    """Forward passes per batch-size range ("1", "2", "3-4", ..., "257+") from a /metrics page, whose
    `resnet_batch_size` buckets are cumulative."""
    found = re.findall(r'^resnet_batch_size_bucket\{le="([^"]+)"\} (\S+)$', metrics_text, re.M)
    ranges: dict[str, int] = {}
    low, below = 1, 0.0
    for le, cumulative in found:
        high = None if le == "+Inf" else int(float(le))
        label = f"{low}+" if high is None else str(low) if low == high else f"{low}-{high}"
        if count := int(float(cumulative) - below):
            ranges[label] = count
        low, below = (high or low - 1) + 1, float(cumulative)
    return ranges


def service_rows(levels: list[int], *, image: str, seconds: float, warmup: float,
                 extra_env: dict[str, str]) -> tuple[list[dict], dict[str, Any]]:
    """The service on the GPU under closed-loop load at each concurrency; rows and what the server said."""
    ckpt = checkpoint_path("resnet50@224")
    data = image_bytes(image)
    ext = "png" if data[:4] == b"\x89PNG" else "jpeg"
    upload = (f"image.{ext}", data, f"image/{ext}")
    env = {"RESNET_DEVICE": "cuda", **extra_env}
    server = Server("torch", ckpt, env)
    rows = []
    try:
        try:
            server.wait_ready()
        except SystemExit:
            print(server.output()[-4000:], file=sys.stderr)
            raise
        model = httpx.get(f"{server.url}/v1/model", timeout=30).json()
        if not str(model["device"]).startswith("cuda"):
            raise SystemExit(f"the service runs on {model['device']}, not on CUDA; see {server.log_path}")
        for c in levels:
            r = asyncio.run(closed_loop(server.url + server.predict_path, upload, concurrency=c, warmup=warmup,
                                        seconds=seconds, pid=server.proc.pid))
            rows.append(r)
            print(f"service (torch, {model['device']}) c={c:3d}: {r['requests_per_s']:7.1f} req/s  p50 "
                  f"{r['p50_ms']:6.1f}  p99 {r['p99_ms']:6.1f} ms  batch {r['mean_batch'] or 0:.1f}  "
                  f"{r['statuses']}  server cpu {r['server_cpu_cores']:.1f}  client cpu {r['client_cpu_cores']:.1f}",
                  flush=True)
        histogram = batch_histogram(httpx.get(f"{server.url}/metrics", timeout=30).text)
    finally:
        server.stop()
    return rows, {"checkpoint": str(ckpt), "settings": env, "device": model["device"], "batching": model["batching"],
                  "batch_size_histogram": histogram, "image": IMAGES[image][0]}


# ---------------------------------------------------------------- results

def tables(result: dict[str, Any]) -> str:
    """The markdown of gpu_bench.md (bench.common.print_table's format)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        gpu, machine = result["gpu"], result["machine"]
        print(f"# GPU benchmark, {machine['date']}\n\n{gpu['device']} ({gpu['nvidia_smi'] or 'nvidia-smi: n/a'}), "
              f"torch {gpu['torch']}, CUDA {gpu['torch_cuda']}, cuDNN {gpu['cudnn']}; CPU {machine['cpu']} x "
              f"{machine['cpus']}.\n\n`{machine['command']}`")
        rows = result.get("model_rows", [])
        if rows:
            modes = list(dict.fromkeys(r["mode"] for r in rows))
            at = {(r["mode"], r["batch"]): r["images_per_s"] for r in rows}
            sizes = sorted({r["batch"] for r in rows})
            print_table([{"batch": n, **{m: at.get((m, n)) for m in modes}} for n in sizes], ["batch", *modes],
                        f"resnet50 3x{result['size']}x{result['size']}, input on the GPU: images/s "
                        "(CUDA events, median)")
        service = result.get("service")
        if service:
            print_table([{**r, "statuses": " ".join(f"{k}:{v}" for k, v in r["statuses"].items())}
                         for r in service["rows"]],
                        ["concurrency", "requests_per_s", "p50_ms", "p90_ms", "p99_ms", "statuses", "mean_batch",
                         "decode_ms", "queue_ms", "inference_ms", "server_cpu_cores", "client_cpu_cores"],
                        f"service, RESNET_BACKEND=torch on {service['device']}, {service['image']}, "
                        f"max batch {service['batching']['max_batch_size']}: closed loop")
            print("forward passes by batch size (/metrics: the whole run, load warm-up included): "
                  f"{service['batch_size_histogram']}")
    return buf.getvalue()


def write(out: Path, result: dict[str, Any]) -> None:
    """gpu_bench.json and gpu_bench.md in `out`, each written atomically (also after the model part alone)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("gpu_bench.json", json.dumps(result, indent=2, default=str) + "\n"),
                       ("gpu_bench.md", tables(result))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="folder for gpu_bench.json and gpu_bench.md (default: bench/results/gpu-<UTC date>)")
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32,64", help="model rows: batch sizes (default: %(default)s)")
    p.add_argument("--modes", default=",".join(MODES), help="model rows: comma list of modes (default: %(default)s)")
    p.add_argument("--size", type=int, default=224, help="model rows: input height and width (default: 224)")
    p.add_argument("--seconds", type=float, default=1.0, help="model rows: timed seconds per point (default: 1)")
    p.add_argument("--repeats", type=int, default=5, help="model rows: timed runs per point, median (default: 5)")
    p.add_argument("--concurrency", default="64", help="service rows: closed-loop clients, comma list (default: 64)")
    p.add_argument("--image", default="photo", choices=sorted(IMAGES), help="service rows: upload (default: photo)")
    p.add_argument("--service-seconds", type=float, default=10.0, help="service rows: measured window (default: 10)")
    p.add_argument("--warmup", type=float, default=3.0, help="service rows: unmeasured load first (default: 3 s)")
    p.add_argument("--env", action="append", default=[], metavar="RESNET_X=V",
                   help="service settings on top of RESNET_DEVICE=cuda (repeatable), e.g. RESNET_MAX_BATCH_SIZE=64")
    p.add_argument("--skip-model", action="store_true", help="no model rows")
    p.add_argument("--skip-service", action="store_true", help="no service rows")
    p.add_argument("--check", action="store_true",
                   help="only say whether this Python can run the GPU check (exit 3: no CUDA, 2: imports missing)")
    args = p.parse_args(argv)
    if args.check:
        return check()
    problem = cuda_problem()
    if problem:
        print(f"no CUDA device: {problem}", file=sys.stderr)
        return NO_CUDA_EXIT
    modes = args.modes.split(",")
    if unknown := sorted(set(modes) - set(MODES)):
        p.error(f"--modes: unknown {', '.join(unknown)}; known: {', '.join(MODES)}")
    from datetime import UTC, datetime

    out = args.out or Path(__file__).resolve().parent / "results" / f"gpu-{datetime.now(UTC):%Y%m%d-%H%M}"
    result: dict[str, Any] = {"benchmark": "gpu_bench", "machine": machine_info(), "gpu": gpu_info(),
                              "size": args.size}
    if not args.skip_model:
        result["model_rows"] = model_rows([int(b) for b in args.batch_sizes.split(",")], modes, size=args.size,
                                          seconds=args.seconds, repeats=args.repeats)
        write(out, result)
    if not args.skip_service:
        extra_env = dict(kv.split("=", 1) for kv in args.env)
        rows, info = service_rows([int(c) for c in args.concurrency.split(",")], image=args.image,
                                  seconds=args.service_seconds, warmup=args.warmup, extra_env=extra_env)
        result["service"] = {"rows": rows, **info}
    write(out, result)
    print(tables(result))
    print(f"wrote {out / 'gpu_bench.json'} and {out / 'gpu_bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
