"""Shared by the benchmarks: machine description, result files, tables, test images and checkpoints.

Nothing here downloads anything: images are drawn from a seeded generator and resnet50/resnet18
checkpoints get random weights (speed does not depend on the weight values), built by the tests' builder
(devkit/checkpoints.py), which the benchmarks share with the tests as `devkit`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from devkit.images import encode

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORKDIR = Path(os.environ.get("RESNET_BENCH_DIR", Path(tempfile.gettempdir()) / "resnet-bench"))
DEFAULT_CHECKPOINT = ROOT / "weights" / "model.pt"

# ---------------------------------------------------------------- machine and results

def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def busy_processes(threshold: float = 20.0) -> list[str]:
    """Other processes using more than `threshold` % CPU right now: they make timings meaningless."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    except OSError:
        return []
    busy = []
    for line in out.splitlines()[1:]:
        pid, pcpu, args = line.strip().split(None, 2)
        if int(pid) != os.getpid() and float(pcpu) >= threshold and "ps -eo" not in args:
            busy.append(f"{pid} {pcpu}% {args[:100]}")
    return busy


def machine_info() -> dict[str, Any]:
    import PIL
    import torch

    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "loadavg_1m": os.getloadavg()[0],
        "busy_processes": busy_processes(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort_version,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def warn_if_busy() -> None:
    busy = busy_processes()
    if busy:
        print("WARNING: other processes are using the CPU; timings will be off:\n  " + "\n  ".join(busy),
              file=sys.stderr)


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """bench/results/<name>.json with the machine description; written atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine_info(), **payload}, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str = "") -> None:
    """A GitHub-markdown table, so that it can be pasted into docs/BENCHMARKS.md as is."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return "" if v is None else str(v)

    if title:
        print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join(" --- " for _ in columns) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")
    print(flush=True)


def time_loop(fn: Callable[[], Any], *, seconds: float, min_iters: int = 3, warmup: int = 2) -> list[float]:
    """Call `fn` `warmup` times, then until `seconds` have passed (at least `min_iters` times); seconds per call."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < min_iters or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# ---------------------------------------------------------------- images

def photo_like(width: int, height: int, *, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A deterministic image with photo-like statistics (smooth shapes plus sensor noise), so that JPEG and
    PNG sizes and decode times are close to those of real photos, unlike pure noise or flat colour."""
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    low = rng.integers(0, 256, size=(max(2, height // 64), max(2, width // 64), channels), dtype=np.uint8)
    base = Image.fromarray(low.squeeze(-1) if channels == 1 else low).resize((width, height), Image.BICUBIC)
    arr = np.asarray(base, dtype=np.int16)
    arr = arr + rng.normal(0, 4, size=arr.shape).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode)


IMAGES: dict[str, tuple[str, str, Callable[[], bytes]]] = {
    # name: (description, file extension, maker)
    "photo": ("640x480 JPEG q90 (a typical upload)", "jpg",
              lambda: encode(photo_like(640, 480, seed=1), "JPEG", quality=90)),
    "jpeg12mp": ("4000x3000 JPEG q90 (12 MP camera photo)", "jpg",
                 lambda: encode(photo_like(4000, 3000, seed=2), "JPEG", quality=90)),
    "png1mp": ("1152x864 RGB PNG (1 MP)", "png", lambda: encode(photo_like(1152, 864, seed=3), "PNG")),
    "small": ("320x240 JPEG q90", "jpg", lambda: encode(photo_like(320, 240, seed=4), "JPEG", quality=90)),
    "fmnist": ("28x28 grayscale PNG (Fashion-MNIST sized)", "png",
               lambda: encode(photo_like(28, 28, seed=5, mode="L"), "PNG")),
}


def image_bytes(name: str) -> bytes:
    """The named benchmark image, generated once and cached under WORKDIR."""
    return image_path(name).read_bytes()


def image_path(name: str) -> Path:
    _, ext, make = IMAGES[name]
    path = WORKDIR / "images" / f"{name}.{ext}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())
    return path


# ---------------------------------------------------------------- checkpoints

def checkpoint_path(spec: str) -> Path:
    """`spec` is a checkpoint file, "default" (weights/model.pt) or an architecture name, optionally with
    an input size (`resnet50@224`): a checkpoint with random weights is built once under WORKDIR."""
    if spec == "default":
        if not DEFAULT_CHECKPOINT.exists():
            raise SystemExit(f"{DEFAULT_CHECKPOINT} does not exist yet (train it, or pass an architecture name)")
        return DEFAULT_CHECKPOINT
    if Path(spec).is_file():
        return Path(spec)
    import models

    arch, _, size = spec.partition("@")
    if arch not in models.list_models():
        raise SystemExit(f"{spec!r} is neither a checkpoint file nor an architecture: {models.list_models()}")
    crop = int(size or (28 if arch in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110") else 224))
    # One directory each: save_checkpoint writes class_indices.json beside the checkpoint, and the service reads it.
    path = WORKDIR / "checkpoints" / f"{arch}-{crop}" / "model.pt"
    if path.exists():
        return path
    from devkit.checkpoints import class_names, fashion_mnist_spec, make_checkpoint

    metrics = {"note": "random weights, for speed benchmarks only"}
    if crop <= 64:  # the small-input stem, single channel, as the Fashion-MNIST model
        return make_checkpoint(path, class_names(10), arch=arch, spec=fashion_mnist_spec(crop), metrics=metrics,
                               small_input=True)
    spec = models.PreprocessSpec(resize=round(crop * 256 / 224), crop=crop)
    return make_checkpoint(path, class_names(1000), arch=arch, spec=spec, metrics=metrics)


def onnx_path_for(ckpt_path: Path) -> Path:
    """The checkpoint's ONNX export under WORKDIR, written by resnet-export's function when missing or stale."""
    import models
    from models.onnx_export import export_onnx, read_onnx_metadata

    ckpt = models.load_checkpoint(ckpt_path)
    out = WORKDIR / "onnx" / f"{ckpt.sha256[:16]}.onnx"
    if not out.exists() or read_onnx_metadata(out).get("checkpoint_sha256") != ckpt.sha256:
        export_onnx(ckpt, out)
    return out


def artifact_path_for(ckpt_path: Path, precision: str) -> Path:
    """An fp32, bf16 or int8 ONNX artifact of the checkpoint under WORKDIR, for speed measurements.

    int8 is calibrated on 32 photo-like images through the checkpoint's preprocessing (random-weight models have
    no data to be accurate on; the accuracy guard is measured by resnet-export on real data, not here). For the
    default model the shipped weights/model.int8.onnx is used.
    """
    import models
    from models.onnx_export import INPUT_NAME, with_metadata
    from models.quantize import quantize_int8

    shipped = DEFAULT_CHECKPOINT.with_suffix(f".{precision}.onnx")  # weights/model.int8.onnx
    if Path(ckpt_path).resolve() == DEFAULT_CHECKPOINT.resolve() and shipped.exists():
        return shipped
    fp32 = onnx_path_for(ckpt_path)
    if precision == "fp32":
        return fp32
    ckpt = models.load_checkpoint(ckpt_path)
    out = fp32.with_suffix(f".{precision}.onnx")
    if out.exists():
        return out
    if precision == "bf16":
        data = with_metadata(fp32.read_bytes(), {"precision": "bf16"})
    else:
        mode = "L" if ckpt.preprocess.channels == 1 else "RGB"
        images = [models.load_image_tensor(encode(photo_like(320, 240, seed=s, mode=mode), "PNG"), ckpt.preprocess)
                  for s in range(32)]
        batches = (np.stack([t.numpy() for t in images[i:i + 8]]) for i in range(0, 32, 8))
        data = with_metadata(quantize_int8(fp32.read_bytes(), batches, input_name=INPUT_NAME), {"precision": "int8"})
    out.write_bytes(data)
    return out
