"""Benchmark: the latency of one explanation, as a ratio to one forward plus backward pass of the same model.

    python -m bench.explain --models default resnet50@224 --threads 2

Per model and method: `models.explain.explain` on a private copy (what `POST /v1/explain` and `resnet-predict
--explain` run: one forward, the backward from the class score to the layer, upsampling and scaling), the same plus
the PNG overlay (the service's default answer), and the baseline: a forward pass and a full backward pass (every
parameter's gradient) of the same model on the same image. Goal: explanation / baseline <= 1.5. Random weights for
architecture names (bench/common.py); the image is a seeded photo-like picture, preprocessed as the service does.
"""

from __future__ import annotations

import argparse

import torch

from bench.common import (
    checkpoint_path,
    encode,
    median,
    photo_like,
    print_table,
    time_loop,
    warn_if_busy,
    write_results,
)
from models import load_checkpoint, load_image_tensor
from models.explain import METHODS, explain, explainable_copy
from models.explain_render import overlay_png

GOAL = 1.5


def forward_backward(model: torch.nn.Module, image: torch.Tensor):
    """One forward and a full backward (parameter gradients included) for the top-1 class: the baseline."""
    for p in model.parameters():
        p.requires_grad_(True)
    x = image[None]

    def run() -> None:
        model.zero_grad(set_to_none=True)
        logits = model(x)
        logits[0, int(logits.detach().argmax())].backward()

    return run


def measure(spec: str, methods: list[str], seconds: float) -> list[dict]:
    ckpt = load_checkpoint(checkpoint_path(spec))
    pre = ckpt.preprocess
    picture = photo_like(pre.resize * 2, pre.resize * 2, seed=1, mode=pre.color_mode)
    image = load_image_tensor(encode(picture, "PNG"), pre)
    model = ckpt.model.eval()
    baseline = median(time_loop(forward_backward(model, image), seconds=seconds))
    private = explainable_copy(model)
    rows = []
    for method in methods:
        alone = median(time_loop(lambda m=method: explain(private, image, None, m), seconds=seconds))

        def with_png(m: str = method) -> None:
            overlay_png(image, explain(private, image, None, m).heatmap, pre)

        drawn = median(time_loop(with_png, seconds=seconds))
        rows.append({"model": spec, "arch": ckpt.arch, "crop": pre.crop, "method": method,
                     "fwd_bwd_ms": baseline * 1e3, "explain_ms": alone * 1e3, "explain_png_ms": drawn * 1e3,
                     "ratio": alone / baseline, "ratio_png": drawn / baseline, "goal_met": alone / baseline <= GOAL})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["default", "resnet50@224"],
                   help="checkpoints: a file, 'default' (weights/model.pt) or ARCH[@SIZE] with random weights")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to time")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2: the target machine)")
    p.add_argument("--seconds", type=float, default=10.0, help="timing per measurement, after 2 warm-up calls")
    p.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/explain.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warn_if_busy()
    rows = [row for spec in args.models for row in measure(spec, args.methods, args.seconds)]
    print_table(rows, ["model", "method", "fwd_bwd_ms", "explain_ms", "explain_png_ms", "ratio", "ratio_png",
                       "goal_met"], title=f"One explanation vs one forward+backward ({args.threads} threads)")
    if not args.no_write:
        write_results("explain", {"threads": args.threads, "goal_ratio": GOAL, "rows": rows})


if __name__ == "__main__":
    main()
