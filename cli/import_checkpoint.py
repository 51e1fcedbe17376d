"""`resnet-import STATE_DICT --arch A --class-index F [--arch-kwargs JSON] [--preprocess JSON] -o model.pt`.

Turns what the classic PyTorch tutorials save (a bare `state_dict` of a torchvision-shaped ResNet, possibly with
DataParallel's `module.` prefix, and a `class_indices.json` such as `{"0": "daisy", ...}`) into a self-describing
checkpoint: architecture, classes and preprocessing travel with the weights (default preprocessing: the
architecture's own, for the ImageNet nets Resize 256 / CenterCrop 224 / ImageNet mean and std, as their
predict.py does). The weights are checked against the architecture first; errors name what does not fit.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from models.checkpoint import load_checkpoint, save_checkpoint
from models.cli import run_cli
from models.registry import list_models


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resnet-import", description=__doc__.splitlines()[0], allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("state_dict", help="the .pth file torch.save(net.state_dict(), ...) wrote")
    p.add_argument("--arch", required=True, choices=list_models(), metavar="ARCH",
                   help="its architecture, e.g. resnet34 (one of resnet-serve's models)")
    p.add_argument("--class-index", required=True, help="class_indices.json: {\"0\": \"daisy\", ...}")
    p.add_argument("--arch-kwargs", type=_json_object, default=None,
                   help='builder options as JSON, e.g. \'{"small_input": true}\'')
    p.add_argument("--preprocess", type=_json_object, default=None,
                   help="preprocessing as JSON with the checkpoint's keys (resize, crop, mean, std, interpolation, "
                        "color_mode); default: the architecture's own")
    p.add_argument("-o", "--out", required=True, help="the checkpoint to write (class_indices.json goes beside it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("resnet-import", lambda: import_state_dict(args))


def import_state_dict(args: argparse.Namespace) -> None:
    ckpt = load_checkpoint(args.state_dict, class_index=args.class_index, arch=args.arch,
                           arch_kwargs=args.arch_kwargs, preprocess=args.preprocess)
    out = save_checkpoint(args.out, ckpt.model, arch=ckpt.arch, arch_kwargs=ckpt.arch_kwargs, classes=ckpt.classes,
                          preprocess=ckpt.preprocess, training={"imported_from": {
                              "file": str(args.state_dict), "sha256": ckpt.sha256}})
    print(f"wrote {out} ({ckpt.arch}, {len(ckpt.classes)} classes, preprocessing {ckpt.preprocess.to_dict()})")


if __name__ == "__main__":
    sys.exit(main())
