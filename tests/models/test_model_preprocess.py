"""The shared preprocessing: geometry, EXIF, colour modes, refused and broken files, normalisation."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from devkit.images import encode
from models import (
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessSpec,
    UnsupportedImageTypeError,
    load_image_tensor,
    preprocess_image,
)
from models.preprocess import INTERPOLATIONS, convert_mode, decode_image, normalize, resize_center_crop

RAW = PreprocessSpec(resize=8, crop=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # tensor = pixels / 255
RAW_L = PreprocessSpec(resize=8, crop=8, mean=(0.0,), std=(1.0,), color_mode="L")


@pytest.mark.parametrize("size", [(400, 200), (200, 400), (64, 64)])
def test_resize_shorter_side_then_center_crop(size):
    w, h = size
    img = Image.new("RGB", size)
    img.paste((255, 0, 0), (w // 2 - 5, h // 2 - 5, w // 2 + 5, h // 2 + 5))  # a red dot in the middle
    out = resize_center_crop(img, 64, 56)
    assert out.size == (56, 56)
    arr = np.asarray(out)
    assert arr[28, 28, 0] > 200  # the centre stays in the centre
    assert arr[0, 0].sum() == 0 and arr[-1, -1].sum() == 0


TV_INTERPOLATION = {"nearest": transforms.InterpolationMode.NEAREST,
                    "bilinear": transforms.InterpolationMode.BILINEAR,
                    "bicubic": transforms.InterpolationMode.BICUBIC,
                    "lanczos": transforms.InterpolationMode.LANCZOS}


def noisy_gradient(w: int, h: int, mode: str, seed: int = 0) -> Image.Image:
    """Gradients plus noise: any one-pixel shift of the resize or the crop changes the result."""
    yy, xx = np.mgrid[0:h, 0:w]
    channels = 3 if mode == "RGB" else 1
    ramp = (xx * (128 / w) + yy * (96 / h))[..., None] + np.arange(channels) * 16
    arr = ramp + np.random.default_rng(seed).integers(0, 64, (h, w, channels))
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(arr if channels == 3 else arr[..., 0], mode)


def test_every_interpolation_has_a_torchvision_mode():
    assert set(TV_INTERPOLATION) == set(INTERPOLATIONS)
    for name, mode in TV_INTERPOLATION.items():
        assert transforms.functional.pil_modes_mapping[mode] == INTERPOLATIONS[name]


@pytest.mark.parametrize("interpolation", sorted(INTERPOLATIONS))
@pytest.mark.parametrize("color_mode", ["RGB", "L"])
@pytest.mark.parametrize("size", [(640, 427), (427, 640), (1000, 333), (333, 1000), (257, 256), (256, 257),
                                  (500, 500), (150, 90)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_preprocess_image_equals_torchvision(size, color_mode, interpolation):
    mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if color_mode == "RGB" else ((0.2860,), (0.3530,))
    spec = PreprocessSpec(resize=256, crop=224, mean=mean, std=std, interpolation=interpolation,
                          color_mode=color_mode)
    img = noisy_gradient(*size, color_mode)
    reference = transforms.Compose([transforms.Resize(256, TV_INTERPOLATION[interpolation]),
                                    transforms.CenterCrop(224), transforms.ToTensor(),
                                    transforms.Normalize(mean, std)])(img)
    got = preprocess_image(img, spec)
    assert got.shape == reference.shape == (spec.channels, 224, 224)
    assert (got - reference).abs().max().item() <= 1e-6


@pytest.mark.parametrize("color_mode", ["RGB", "L"])
@pytest.mark.parametrize(("size", "resize", "crop"), [((40, 20), 20, 31), ((20, 40), 20, 32), ((7, 5), 5, 8),
                                                      ((30, 17), 21, 24)])
def test_crop_larger_than_the_image_pads_with_zeros_like_torchvision(size, resize, crop, color_mode):
    img = noisy_gradient(*size, color_mode, seed=1)
    reference = transforms.CenterCrop(crop)(transforms.Resize(resize)(img))
    assert np.array_equal(np.asarray(resize_center_crop(img, resize, crop)), np.asarray(reference))


def test_preprocess_image_shape_and_dtype():
    spec = PreprocessSpec(resize=64, crop=56)
    x = preprocess_image(Image.new("RGB", (300, 100), (10, 20, 30)), spec)
    assert x.shape == (3, 56, 56) and x.dtype == torch.float32


def test_exif_rotated_jpeg_is_turned_upright(make_image):
    # a 40x20 landscape picture, left half white, stored with orientation 6 (display rotated 90 degrees clockwise)
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(img, "JPEG", exif=exif, quality=95)
    upright = decode_image(data)
    assert upright.size == (20, 40)
    arr = np.asarray(upright.convert("L"), dtype=float)
    assert arr[:20].mean() > 200 and arr[20:].mean() < 50  # white half now on top
    assert decode_image(encode(img, "JPEG", quality=95)).size == (40, 20)


def test_cmyk_converts_to_rgb():
    img = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    x = load_image_tensor(encode(img, "JPEG", quality=100), RAW)
    assert x[0].mean() > 0.9 and x[1].mean() < 0.1 and x[2].mean() < 0.1


def test_palette_with_transparency_is_composited_on_white():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    img.putpixel((0, 0), 1)
    data = encode(img, "PNG", transparency=0)  # palette entry 0 (red) is transparent
    x = load_image_tensor(data, RAW)
    assert torch.allclose(x[:, 4, 4], torch.ones(3))  # transparent -> white, not red
    assert torch.allclose(x[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))  # opaque blue stays blue


def test_bilevel_image():
    img = Image.new("1", (8, 8), 0)
    img.putpixel((3, 3), 1)
    x = load_image_tensor(encode(img, "PNG"), RAW)
    assert x.shape == (3, 8, 8)
    assert x[:, 3, 3].tolist() == [1.0, 1.0, 1.0] and x[:, 0, 0].tolist() == [0.0, 0.0, 0.0]


def test_la_and_rgba_alpha_is_composited_on_white():
    la = Image.new("LA", (8, 8), (0, 0))  # black, fully transparent
    la.putpixel((1, 1), (0, 255))  # black, opaque
    x = load_image_tensor(encode(la, "PNG"), RAW_L)
    assert x.shape == (1, 8, 8)
    assert x[0, 0, 0] == 1.0 and x[0, 1, 1] == 0.0
    rgba = Image.new("RGBA", (8, 8), (0, 255, 0, 128))  # half-transparent green
    y = load_image_tensor(encode(rgba, "PNG"), RAW)
    assert y[1, 0, 0] == 1.0
    assert abs(y[0, 0, 0].item() - 127 / 255) < 0.01  # half-way between green and white


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    arr = np.array([[0, 16384, 32768, 65535]] * 4, dtype=np.uint16)
    img = Image.fromarray(arr)
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    spec = PreprocessSpec(resize=4, crop=4, mean=(0.0,), std=(1.0,), color_mode="L", interpolation="nearest")
    x = load_image_tensor(data, spec)
    assert torch.allclose(x[0, 0], torch.tensor([0.0, 64 / 255, 128 / 255, 1.0]), atol=1 / 255)
    assert convert_mode(img, "RGB").mode == "RGB"


@pytest.mark.parametrize(
    "data",
    [b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
     b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>',
     b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n"],
)
def test_svg_and_pdf_are_unsupported(data: bytes):
    with pytest.raises(UnsupportedImageTypeError):
        load_image_tensor(data, RAW)


def test_empty_truncated_and_random_bytes_do_not_decode(make_image):
    png = make_image(64, 64, "PNG")
    jpeg = make_image(64, 64, "JPEG")
    for data in (b"", png[: len(png) // 2], jpeg[: len(jpeg) // 3], np.random.default_rng(1).bytes(5000)):
        with pytest.raises(ImageDecodeError):
            load_image_tensor(data, RAW)


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims w x h grey pixels in its header, with no real pixel data behind it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_pixel_limit_is_checked_on_the_header():
    data = png_header_only(5000, 4000)  # 20 Mpx claimed in a few dozen bytes: refused before any decoding
    with pytest.raises(ImageTooLargeError, match="5000x4000"):
        decode_image(data, max_pixels=1_000_000)
    with pytest.raises(ImageDecodeError):  # under the limit, it is decoded and found to be truncated
        decode_image(data, max_pixels=40_000_000)
    with pytest.raises(ImageTooLargeError):  # over Pillow's own decompression-bomb limit too
        load_image_tensor(png_header_only(30000, 30000), RAW, max_pixels=10**10)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    x = load_image_tensor(data, RAW)
    assert x[0].min() > 0.9 and x[1].max() < 0.1 and x[2].max() < 0.1


def test_normalize_matches_a_hand_computation():
    spec = PreprocessSpec(resize=2, crop=2, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    u8 = torch.tensor([[[0, 255], [51, 102]], [[255, 0, ], [0, 0]], [[255, 255], [0, 51]]], dtype=torch.uint8)
    got = normalize(u8, spec)
    for c, (m, s) in enumerate(zip(spec.mean, spec.std, strict=True)):
        for i in range(2):
            for j in range(2):
                assert got[c, i, j].item() == pytest.approx((u8[c, i, j].item() / 255 - m) / s, abs=1e-6)
    floats = u8.float()
    normalize(floats, spec)
    assert torch.equal(floats, u8.float())  # the input is not modified in place


def test_load_image_tensor_is_decode_then_preprocess(make_image):
    spec = PreprocessSpec(resize=40, crop=32)
    data = make_image(80, 60, "PNG")
    expected = preprocess_image(Image.open(io.BytesIO(data)), spec)
    assert torch.equal(load_image_tensor(data, spec), expected)


def test_spec_round_trips_through_a_dict_and_rejects_nonsense():
    spec = PreprocessSpec(resize=32, crop=28, mean=(0.5,), std=(0.25,), color_mode="L", extra={"dataset": "x"})
    d = spec.to_dict()
    assert d["dataset"] == "x" and d["mean"] == [0.5]
    assert PreprocessSpec.from_dict(d) == spec
    with pytest.raises(ValueError, match="crop"):
        PreprocessSpec(resize=10, crop=20)
    with pytest.raises(ValueError, match="color_mode"):
        PreprocessSpec(color_mode="CMYK")
    with pytest.raises(ValueError, match="missing"):
        PreprocessSpec.from_dict({"resize": 1})
