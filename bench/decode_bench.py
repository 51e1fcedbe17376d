"""Benchmark 5, decode and preprocess: ms per image for the shared `models.preprocess` path.

    python -m bench.decode_bench

For each image: decode (with and without JPEG draft decoding, which lets libjpeg scale by 1/2..1/8
while decoding), then preprocess (colour mode, resize, center crop, normalize), one thread.
"""

from __future__ import annotations

import argparse

import torch

from bench.common import IMAGES, image_bytes, median, print_table, time_loop, warn_if_busy, write_results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="jpeg12mp,png1mp,photo,small")
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--torch-threads", type=int, default=1, help="threads for normalize (a decode worker's view)")
    p.add_argument("--name", default="decode")
    args = p.parse_args(argv)

    from models import PreprocessSpec
    from models.preprocess import decode_image, preprocess_image

    warn_if_busy()
    torch.set_num_threads(args.torch_threads)
    spec = PreprocessSpec(resize=args.resize, crop=args.crop)
    rows = []
    for name in args.images.split(","):
        data = image_bytes(name)
        for draft in (False, True):
            size = spec.resize if draft else None
            decoded = decode_image(data, draft_size=size)
            t_dec = median(time_loop(lambda d=data, s=size: decode_image(d, draft_size=s), seconds=args.seconds))
            t_pre = median(time_loop(lambda img=decoded: preprocess_image(img, spec), seconds=args.seconds))
            t_all = median(time_loop(lambda d=data, s=size: preprocess_image(decode_image(d, draft_size=s), spec),
                                     seconds=args.seconds))
            applies = draft and data[:2] == b"\xff\xd8"
            rows.append({
                "image": name, "description": IMAGES[name][0], "bytes": len(data), "draft": draft,
                "decoded_size": "x".join(map(str, decoded.size)), "decode_ms": t_dec * 1e3,
                "preprocess_ms": t_pre * 1e3, "total_ms": t_all * 1e3,
                "note": "" if not draft or applies else "draft applies to JPEG only",
            })
            print(f"{name:>9} draft={draft!s:5}: decode {t_dec * 1e3:7.2f} ms  preprocess {t_pre * 1e3:6.2f} ms  "
                  f"total {t_all * 1e3:7.2f} ms  (decoded {rows[-1]['decoded_size']})", flush=True)

    title = f"decode + preprocess to {spec.crop}x{spec.crop} (resize {spec.resize}), one thread, ms per image"
    print_table(rows, ["image", "bytes", "draft", "decoded_size", "decode_ms", "preprocess_ms", "total_ms"], title)
    big = next((r for r in rows if r["image"] == "jpeg12mp" and r["draft"]), None)
    if big:
        print(f"12 MP JPEG decode + preprocess with draft: {big['total_ms']:.1f} ms (target <= 25 ms: "
              f"{'met' if big['total_ms'] <= 25 else 'MISSED'})")
    write_results(args.name, {"benchmark": "decode", "spec": spec.to_dict(), "rows": rows})


if __name__ == "__main__":
    main()
