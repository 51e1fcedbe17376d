"""Which int8 quantizer: ONNX Runtime's static QDQ quantizer (what resnet-export uses) against NNCF's.

    python -m bench.quantizers --part accuracy     # the default model, real Fashion-MNIST data
    python -m bench.quantizers --part speed        # resnet50@224 and resnet18@224, random weights

accuracy: both quantizers calibrate on the same 512 training images (resnet-export's seeded sample) and are
scored on the held-out validation split with ONNX Runtime and with OpenVINO, against the fp32 model.
speed: images/s of both int8 models at batch 1 and 8 on both runtimes (the service's backend classes), side by side.
NNCF (`pip install nncf==3.4.0`, measured with 3.4.0) is only needed here, not by the project; without it
only ONNX Runtime's quantizer is measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.common import (
    DEFAULT_CHECKPOINT,
    checkpoint_path,
    median,
    onnx_path_for,
    print_table,
    time_loop,
    warn_if_busy,
    write_results,
)

RUNTIMES = ("onnxruntime", "openvino")


def ort_int8(fp32: bytes, batches: list[np.ndarray]) -> bytes:
    from models.onnx_export import INPUT_NAME
    from models.quantize import quantize_int8

    return quantize_int8(fp32, iter(batches), input_name=INPUT_NAME)


def nncf_int8(fp32: bytes, batches: list[np.ndarray]) -> bytes:
    import nncf
    import onnx

    from models.onnx_export import INPUT_NAME

    dataset = nncf.Dataset(batches, lambda x: {INPUT_NAME: x})
    model = nncf.quantize(onnx.load_from_string(fp32), dataset, subset_size=len(batches))
    return model.SerializeToString()


def backend(ckpt, path: Path, runtime: str, threads: int):
    from models.backends import open_backend

    return open_backend(ckpt, artifact=path, runtime=runtime, device="cpu", threads=threads, scoring=True)


def artifacts(ckpt, fp32_path: Path, batches: list[np.ndarray], tmp: Path) -> dict[str, Path]:
    """fp32 and both int8 models, each with the checkpoint's metadata (so the backends accept them)."""
    from models.onnx_export import with_metadata

    fp32 = fp32_path.read_bytes()
    out = {"fp32": fp32_path}
    quantizers = [("ort-quantizer", ort_int8)]
    if importlib.util.find_spec("nncf") is not None:
        quantizers.append(("nncf", nncf_int8))
    else:
        print("nncf is not installed (it is not a project dependency): pip install nncf==3.4.0 adds its rows")
    for name, quantize in quantizers:
        out[name] = tmp / f"{name}.onnx"
        out[name].write_bytes(with_metadata(quantize(fp32, batches), {"precision": "int8"}))
    return out


def accuracy(threads: int) -> dict:
    from cli.evaluate import build_eval_set
    from cli.export import batches as data_batches
    from cli.export import calibration_set, default_data
    from models import load_checkpoint

    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    data = default_data(ckpt)
    calib, _ = calibration_set(data, ckpt, 512, seed=0)
    batches = [x for x, _ in data_batches(calib, 64)]
    evaluation, _, source, _ = build_eval_set(data, ckpt, "val")
    held = list(data_batches(evaluation, 256))
    labels = np.concatenate([y for _, y in held])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = artifacts(ckpt, onnx_path_for(DEFAULT_CHECKPOINT), batches, Path(tmp))
        for runtime in RUNTIMES:
            tops = {name: np.concatenate([backend(ckpt, path, runtime, threads).predict(torch.from_numpy(x))
                                          .argmax(1).numpy() for x, _ in held]) for name, path in paths.items()}
            for name, top in tops.items():
                rows.append({"runtime": runtime, "model": name, "top1": float((top == labels).mean()),
                             "agreement_with_fp32": float((top == tops["fp32"]).mean()), "images": len(labels)})
    shown = [{**r, "top1": f"{100 * r['top1']:.2f} %", "agreement_with_fp32": f"{100 * r['agreement_with_fp32']:.2f} %"}
             for r in rows]
    print_table(shown, ["runtime", "model", "top1", "agreement_with_fp32", "images"],
                f"default model, {source}: int8 quantizers")
    return {"data": source, "rows": rows}


def speed(models: list[str], threads: int, seconds: float) -> dict:
    from models import load_checkpoint

    rows = []
    for spec in models:
        ckpt_path = checkpoint_path(spec)
        ckpt = load_checkpoint(ckpt_path)
        p = ckpt.preprocess
        rng = np.random.default_rng(0)
        batches = [rng.standard_normal((8, p.channels, p.crop, p.crop), dtype=np.float32) for _ in range(4)]
        with tempfile.TemporaryDirectory() as tmp:
            paths = artifacts(ckpt, onnx_path_for(ckpt_path), batches, Path(tmp))
            for runtime in RUNTIMES:
                for name, path in paths.items():
                    run = backend(ckpt, path, runtime, threads).predict
                    for n in (1, 8):
                        x = torch.randn(n, p.channels, p.crop, p.crop)
                        t = median(time_loop(lambda x=x, run=run: run(x), seconds=seconds))
                        rows.append({"model": spec, "runtime": runtime, "artifact": name, "batch": n,
                                     "images_per_s": n / t})
                        print(f"{spec} {runtime:>11} {name:>13} batch {n}: {n / t:8.1f} img/s", flush=True)
    base = {(r["model"], r["runtime"], r["batch"]): r["images_per_s"] for r in rows
            if r["artifact"] == "fp32" and r["runtime"] == "onnxruntime"}
    for r in rows:
        r["vs_ort_fp32"] = r["images_per_s"] / base[(r["model"], "onnxruntime", r["batch"])]
    print_table(rows, ["model", "runtime", "artifact", "batch", "images_per_s", "vs_ort_fp32"],
                f"int8 quantizers, {threads} threads: images/s")
    return {"rows": rows}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("accuracy", "speed"), required=True)
    p.add_argument("--models", default="resnet50@224,resnet18@224")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.part == "speed":
        warn_if_busy()
        write_results("quantizers_speed", {"benchmark": "quantizers", "threads": args.threads,
                                           **speed(args.models.split(","), args.threads, args.seconds)})
    else:
        write_results("quantizers_accuracy", {"benchmark": "quantizers", **accuracy(args.threads)})


if __name__ == "__main__":
    main()
