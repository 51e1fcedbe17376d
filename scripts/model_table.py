"""Parameters and multiply-adds of every registered architecture, next to the papers' figures, as Markdown.

    python scripts/model_table.py --out docs/MODELS.md
    python scripts/model_table.py --only resnet18,resnet20      # print to stdout

Multiply-adds (GMACs) = FLOPs / 2 as counted by `torch.utils.flop_counter.FlopCounterMode`: the papers' "FLOPs" are
multiply-adds. Models are built on the meta device, so nothing is allocated and no arithmetic is done.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import create_model, list_models
from models.atomic import atomic_write_bytes
from models.resnet import Bottleneck

CIFAR = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}
# He et al. 2015 table 1 and table 6; Xie et al. 2017 tables 1 and 5 (ResNeXt-101 64x4d: 15.6 GFLOPs).
PAPER_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3,
               "resnext50_32x4d": 4.2, "resnext101_64x4d": 15.6}
ORDER = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
         "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "resnet20", "resnet32", "resnet44", "resnet56",
         "resnet110"]
PAPER_PARAMS_M = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7}


def gmacs(model: torch.nn.Module, size: int) -> float:
    """Multiply-adds of one forward pass of a (meta) model on one size x size image, in billions."""
    with torch.device("meta"):
        x = torch.empty(1, model.conv1.in_channels, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2 / 1e9


def measure(name: str) -> dict[str, float | int | str | None]:
    """Parameters and GMACs of `name` at its native input (224 px, 1000 classes; CIFAR nets 32 px, 10 classes)."""
    size = 32 if name in CIFAR else 224
    with torch.device("meta"):
        model = create_model(name).eval()
        v1 = create_model(name, stride_in_1x1=True).eval()
    bottleneck = any(isinstance(m, Bottleneck) for m in model.modules())
    return {
        "name": name,
        "input": f"{size}x{size}",
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gmacs": gmacs(model, size),
        "gmacs_v1": gmacs(v1, size) if bottleneck else None,
        "layers": sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in model.modules()),
    }


def _paper(value: float | None, ours: float) -> tuple[str, str]:
    if value is None:
        return "—", ""
    return f"{value:g}", f"{100 * (ours - value) / value:+.1f}%"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| model | input | conv + fc layers | params (M) | paper params (M) | GMACs | GMACs, v1 stride | "
             "paper GFLOPs (= GMACs) | GMACs vs paper |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        params_paper, params_diff = _paper(PAPER_PARAMS_M.get(r["name"]), r["params_m"])
        macs_paper, macs_diff = _paper(PAPER_GMACS.get(r["name"]), r["gmacs"])
        params_paper = params_paper + (f" ({params_diff})" if params_diff else "")
        v1 = f"{r['gmacs_v1']:.3f}" if r["gmacs_v1"] is not None else "—"
        lines.append(f"| {r['name']} | {r['input']} | {r['layers']} | {r['params_m']:.2f} | {params_paper} | "
                     f"{r['gmacs']:.3f} | {v1} | {macs_paper} | {macs_diff or '—'} |")
    return "\n".join(lines)


NOTES = """
## Notes

- GMACs are counted by `torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2) for one image: convolutions and the
  final linear layer; batch norm, ReLU, pooling and additions are not counted, as in the papers.
- ResNet-50/101/152 count 0.2-0.3 GMACs more than the paper: by default the stride of a downsampling bottleneck
  sits on its 3x3 convolution (ResNet v1.5, as torchvision), which then runs at the higher resolution. The
  "v1 stride" column is the same model built with `stride_in_1x1=True` (the ResNet paper's placement): it gives
  the paper's figures. The ResNeXt paper already strides in the 3x3 (as fb.resnet.torch), so its figures match
  the default column. Parameters do not depend on where the stride sits.
- "conv + fc layers" counts every convolution, projection shortcuts included, and the classifier. The CIFAR
  models (He et al. 2015, section 4.2: 10 classes, parameter-free zero-padding shortcuts, option A) have exactly
  6n+2 of them.
- Parameter counts of the ImageNet models equal torchvision's (the state dicts are interchangeable).

## CIFAR shortcuts: option A or B

- resnet20/32/44/56/110 use **option A** by default, as the paper's CIFAR-10 table: where a stage halves the
  resolution and doubles the channels, the shortcut subsamples by 2 and zero-pads the new channels (no parameters),
  so the parameter counts above match the paper's.
- For **option B** (a 1x1 projection convolution + batch norm on those two shortcuts, identity elsewhere), pass
  `shortcut="B"`: `create_model("resnet56", shortcut="B")`. This adds 2,752 parameters to every depth (16x32 and
  32x64 weights and their batch norms). A checkpoint stores the choice in `arch_kwargs`, so `load_checkpoint`
  rebuilds the same variant.
- The ImageNet-sized models always use option B (projection shortcuts only where the shape changes), as torchvision.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated architectures (default: all registered)")
    parser.add_argument("--out", type=Path, help="write the Markdown here (atomically) instead of to stdout")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list_models()
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        parser.error(f"unknown architecture(s) {unknown}; known: {', '.join(list_models())}")
    names = sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    rows = [measure(n) for n in names]
    command = "python scripts/model_table.py" + (f" --only {args.only}" if args.only else "")
    command += f" --out {args.out.as_posix()}" if args.out else ""
    text = (f"# Model zoo: parameters and multiply-adds\n\n"
            f"Generated by `{command}` (torch {torch.__version__.split('+')[0]}).\n\n"
            f"{markdown_table(rows)}\n{NOTES}")
    if args.out:
        atomic_write_bytes(args.out, text.encode())
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
