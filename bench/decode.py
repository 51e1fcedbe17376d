"""JPEG decoders for the service's decode path: decode + preprocess to the model input, one thread, ms per image.

    python -m bench.decode

On a 12 MP (4000x3000) and a 1 MP (1152x864) photo-like JPEG (quality 90, made here), each candidate goes from the
file's bytes to the normalized 224 input (ImageNet preprocessing: resize 256, center crop 224):
  pillow      the service's path, `models.preprocess.load_image_tensor`: Pillow's draft mode lets libjpeg scale by
              1/2, 1/4 or 1/8 while decoding, both sides staying >= the resize
  simplejpeg  `decode_jpeg` at the scale Pillow picks ("pillow scale": the same pixels are possible), optionally with
              libjpeg-turbo's fast DCT and fast upsampling, or at the smallest M/8 scale >= the resize
              (`min_height`/`min_width` = resize: fewer, different pixels)
  turbojpeg   PyTurboJPEG at Pillow's scale, where its libturbojpeg loads (2.x needs libjpeg-turbo >= 3.0, which
              Debian 12 does not ship; 1.x works with Debian's libturbojpeg0)
A candidate pays for the guards an adopted decoder would keep: Pillow reads the header (pixel limit, mode, EXIF
orientation; no pixel is decoded), and the pixels go through `preprocess_image` like Pillow's. Reported: ms per image,
the ratio to Pillow, and the largest pixel difference from Pillow's decode and from Pillow's 224 input (0-255).
The issue's bar: adopt a decoder >= 1.5x faster than Pillow draft on the 12 MP photo, at <= 15 ms.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable

import numpy as np
import PIL
import torch
from PIL import ExifTags, Image, features

from bench.common import median, photo_like, print_table, time_loop, warn_if_busy, write_results
from devkit.images import encode
from models.preprocess import (
    DEFAULT_MAX_PIXELS,
    PreprocessSpec,
    decode_image,
    preprocess_image,
    resize_center_crop,
)

IMAGES: dict[str, tuple[int, int, int]] = {"jpeg12mp": (4000, 3000, 2), "jpeg1mp": (1152, 864, 3)}  # w, h, seed
TARGET_RATIO, TARGET_MS = 1.5, 15.0
PILLOW = "pillow draft (service)"
_TRANSPOSE = {2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180],
              4: [Image.Transpose.FLIP_TOP_BOTTOM], 5: [Image.Transpose.TRANSPOSE], 6: [Image.Transpose.ROTATE_270],
              7: [Image.Transpose.TRANSVERSE], 8: [Image.Transpose.ROTATE_90]}

Decoder = Callable[[bytes, int], Image.Image]  # (data, resize) -> decoded image, orientation applied


def _image(arr: np.ndarray) -> Image.Image:
    """(H, W, 3) or (H, W, 1) uint8 -> an 'RGB' or 'L' image."""
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def guarded(pixels: Callable[[bytes, Image.Image, int, int], np.ndarray]) -> Decoder:
    """A decoder of `pixels(data, header, scale, resize)` behind the guards Pillow's path has: header-only pixel limit,
    mode, EXIF orientation. `header` has had `draft()` called: its size is the one Pillow decodes at, 1/`scale`."""
    def decode(data: bytes, resize: int) -> Image.Image:
        header = Image.open(io.BytesIO(data))
        w, h = header.size
        if w * h > DEFAULT_MAX_PIXELS or header.format != "JPEG" or header.mode not in ("RGB", "L"):
            raise ValueError("the service would hand this file to Pillow")
        orientation = header.getexif().get(ExifTags.Base.Orientation, 1)
        header.draft(header.mode, (resize, resize))
        scale = next(s for s in (8, 4, 2, 1) if -(-w // s) == header.size[0])
        img = _image(pixels(data, header, scale, resize))
        for op in _TRANSPOSE.get(orientation, []):
            img = img.transpose(op)
        return img
    return decode


def candidates() -> tuple[dict[str, Decoder], dict[str, str], dict[str, str | None]]:
    """The decoders that can run here, why the others cannot, and the library versions."""
    found: dict[str, Decoder] = {PILLOW: lambda data, resize: decode_image(data, draft_size=resize)}
    missing: dict[str, str] = {}
    versions: dict[str, str | None] = {"pillow": PIL.__version__,
                                       "pillow_libjpeg_turbo": features.version("libjpeg_turbo")}
    try:
        import simplejpeg
    except ImportError as e:
        missing["simplejpeg"] = str(e)
    else:
        def simple(fast: bool, own_scale: bool) -> Decoder:
            def pixels(data: bytes, header: Image.Image, scale: int, resize: int) -> np.ndarray:
                w, h = (resize, resize) if own_scale else header.size
                return simplejpeg.decode_jpeg(data, "RGB" if header.mode == "RGB" else "GRAY", fastdct=fast,
                                              fastupsample=fast, min_height=h, min_width=w)
            return guarded(pixels)

        found["simplejpeg, pillow scale"] = simple(fast=False, own_scale=False)
        found["simplejpeg, pillow scale, fastdct+fastupsample"] = simple(fast=True, own_scale=False)
        found["simplejpeg, smallest M/8 scale >= resize"] = simple(fast=False, own_scale=True)
        versions["simplejpeg"] = simplejpeg.__version__
    try:
        import turbojpeg

        tj = turbojpeg.TurboJPEG()
    except (ImportError, OSError, RuntimeError) as e:
        missing["turbojpeg"] = str(e).strip().splitlines()[0]
    else:
        def turbo(data: bytes, header: Image.Image, scale: int, resize: int) -> np.ndarray:
            fmt = turbojpeg.TJPF_RGB if header.mode == "RGB" else turbojpeg.TJPF_GRAY
            return tj.decode(data, pixel_format=fmt, scaling_factor=(1, scale))
        found["turbojpeg, pillow scale"] = guarded(turbo)
        versions["pyturbojpeg"] = getattr(turbojpeg, "__version__", None)
    return found, missing, versions


def pixel_difference(a: Image.Image, b: Image.Image) -> tuple[float | None, float | None]:
    """Largest and mean absolute difference (0-255), or None when the sizes differ."""
    if a.size != b.size or a.mode != b.mode:
        return None, None
    d = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return float(d.max()), float(d.mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="jpeg12mp,jpeg1mp", help=f"comma list of {sorted(IMAGES)} (default: both)")
    p.add_argument("--resize", type=int, default=256, help="shorter side before the crop (default: 256)")
    p.add_argument("--crop", type=int, default=224, help="center crop (default: 224)")
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per candidate and image (default: 3)")
    p.add_argument("--rounds", type=int, default=3,
                   help="the seconds are split into this many rounds over all candidates in turn (default: 3)")
    p.add_argument("--name", default="decode_libraries", help="bench/results/NAME.json (default: %(default)s)")
    args = p.parse_args(argv)

    warn_if_busy()
    torch.set_num_threads(1)
    spec = PreprocessSpec(resize=args.resize, crop=args.crop)
    decoders, missing, versions = candidates()
    print(f"libraries: {versions}")
    for name, why in missing.items():
        print(f"{name}: not measured ({why})")
    rows = []
    for image in args.images.split(","):
        w, h, seed = IMAGES[image]
        data = encode(photo_like(w, h, seed=seed), "JPEG", quality=90)
        reference = decoders[PILLOW](data, spec.resize)
        ref_input = resize_center_crop(reference, spec.resize, spec.crop, spec.interpolation)
        times: dict[str, list[float]] = {name: [] for name in decoders}
        for _ in range(args.rounds):
            for name, dec in decoders.items():
                times[name] += time_loop(lambda d=dec, b=data: preprocess_image(d(b, spec.resize), spec),
                                         seconds=args.seconds / args.rounds, warmup=1)
        base_ms = median(times[PILLOW]) * 1e3
        for name, dec in decoders.items():
            img = dec(data, spec.resize)
            ms = median(times[name]) * 1e3
            dec_max, _ = pixel_difference(img, reference)
            in_max, in_mean = pixel_difference(resize_center_crop(img, spec.resize, spec.crop, spec.interpolation),
                                               ref_input)
            rows.append({"image": image, "size": f"{w}x{h}", "bytes": len(data), "decoder": name,
                         "decoded": "x".join(map(str, img.size)), "ms": ms, "vs_pillow": base_ms / ms,
                         "decoded_max_diff": dec_max, "input_max_diff": in_max, "input_mean_diff": in_mean,
                         "n": len(times[name])})
            print(f"{image} {name:>48}: {ms:6.2f} ms  x{base_ms / ms:4.2f}  decoded {rows[-1]['decoded']}  "
                  f"max diff decoded {dec_max} input {in_max}", flush=True)

    title = (f"JPEG q90 decode + preprocess to {spec.crop}x{spec.crop} (resize {spec.resize}), one thread, "
             "ms per image (median); diffs vs Pillow, 0-255")
    print_table(rows, ["image", "decoder", "decoded", "ms", "vs_pillow", "decoded_max_diff", "input_max_diff",
                       "input_mean_diff"], title)
    verdict = decide(rows)
    print(verdict["line"])
    write_results(args.name, {"benchmark": "decode_libraries", "spec": spec.to_dict(), "libraries": versions,
                              "not_measured": missing,
                              "rows": rows, "verdict": verdict})


def decide(rows: list[dict]) -> dict:
    """The issue's bar on the 12 MP photo, for the fastest candidate whose model input matches Pillow's exactly."""
    big = [r for r in rows if r["image"] == "jpeg12mp"]
    base = next((r for r in big if r["decoder"] == PILLOW), None)
    exact = [r for r in big if r["decoder"] != PILLOW and r["input_max_diff"] == 0]
    if not base or not exact:
        return {"adopt": False, "line": "no exact candidate measured on jpeg12mp"}
    best = max(exact, key=lambda r: r["vs_pillow"])
    adopt = best["vs_pillow"] >= TARGET_RATIO and best["ms"] <= TARGET_MS
    line = (f"12 MP: fastest exact candidate {best['decoder']} {best['ms']:.1f} ms = x{best['vs_pillow']:.2f} "
            f"vs Pillow draft {base['ms']:.1f} ms (bar: >= x{TARGET_RATIO} and <= {TARGET_MS:g} ms): "
            f"{'ADOPT' if adopt else 'do not adopt'}")
    return {"adopt": adopt, "best": best["decoder"], "ratio": best["vs_pillow"], "ms": best["ms"],
            "pillow_ms": base["ms"], "line": line}


if __name__ == "__main__":
    main()
