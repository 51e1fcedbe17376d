"""The hostile-input corpus: every file is generated here (no binary blobs in the repository).

Each `Sample` says what the service must answer: 200 with predictions, or the documented error status and code.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from devkit.images import encode, noise

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOMB_SIDE = 20_000


@dataclass(frozen=True)
class Sample:
    """One upload and the answer it must get (`code` None = 200 with predictions)."""

    name: str
    filename: str
    content_type: str
    data: bytes
    status: int = 200
    code: str | None = None

    @property
    def valid(self) -> bool:
        return self.code is None


def gradient(width: int, height: int) -> Image.Image:
    """A smooth RGB image: a 12 MP JPEG of it stays small (a photo-sized upload without a photo-sized file)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    arr = np.stack(np.broadcast_arrays(x + 0 * y, y + 0 * x, (x + y) / 2), axis=-1).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_ihdr(width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` RGB pixels but carries none."""
    return PNG_SIGNATURE + png_ihdr(width, height) + png_chunk(b"IEND", b"")


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A real, complete `side` x `side` 1-bit PNG (all black), compressed row by row: ~50 KB on the wire,
    400 million pixels decoded. Never more than one row is held in memory while making it."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    parts = [z.compress(row) for _ in range(side)]
    parts.append(z.flush())
    return PNG_SIGNATURE + png_ihdr(side, side, bit_depth=1, color_type=0) + png_chunk(b"IDAT", b"".join(parts)) \
        + png_chunk(b"IEND", b"")


def idat_size(data: bytes) -> int:
    """Decompressed size of a PNG's image data, streamed (the bomb's 50 MB are never held at once)."""
    pos, z, total = len(PNG_SIGNATURE), zlib.decompressobj(), 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            chunk = data[pos + 8:pos + 8 + length]
            while chunk:
                total += len(z.decompress(chunk, 1 << 20))
                chunk = z.unconsumed_tail
        pos += 12 + length
    return total + len(z.flush())


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A non-square noisy JPEG whose EXIF says "rotate 90 degrees clockwise to display" (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(noise(48, 40, seed=7), "JPEG", quality=95, exif=exif.tobytes())


def _palette_with_transparency() -> bytes:
    img = noise(40, 40, seed=3).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(img, "PNG", transparency=0)


def _animated_gif() -> bytes:
    frames = [noise(40, 40, seed=s).convert("P") for s in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _multipage_tiff() -> bytes:
    pages = [noise(40, 40, seed=s) for s in range(3)]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


VALID: dict[str, tuple[str, str, Callable[[], bytes]]] = {
    "cmyk_jpeg": ("cmyk.jpg", "image/jpeg", lambda: encode(noise(48, 40, "CMYK", seed=1), "JPEG", quality=90)),
    "gray16_png": ("gray16.png", "image/png", lambda: encode(Image.fromarray(  # uint16 -> mode I;16
        np.random.default_rng(2).integers(0, 65536, (40, 48), dtype=np.uint16)), "PNG")),
    "palette_transparent_png": ("palette.png", "image/png", _palette_with_transparency),
    "bilevel_png": ("bilevel.png", "image/png", lambda: encode(noise(48, 40, "L", seed=4).convert("1"), "PNG")),
    "la_png": ("la.png", "image/png", lambda: encode(noise(48, 40, "L", seed=5).convert("LA"), "PNG")),
    "animated_gif": ("animated.gif", "image/gif", _animated_gif),
    "multipage_tiff": ("pages.tiff", "image/tiff", _multipage_tiff),
    "webp": ("image.webp", "image/webp", lambda: encode(noise(48, 40, seed=6), "WEBP", quality=90)),
    "bmp": ("image.bmp", "image/bmp", lambda: encode(noise(48, 40, seed=8), "BMP")),
    "exif_rotated_jpeg": ("rotated.jpg", "image/jpeg", exif_rotated_jpeg),
    "one_pixel_png": ("one.png", "image/png", lambda: encode(noise(1, 1, seed=9), "PNG")),
    "strip_5000x4_png": ("strip.png", "image/png", lambda: encode(noise(5000, 4, seed=10), "PNG")),
    "jpeg_12mp": ("camera.jpg", "image/jpeg", lambda: encode(gradient(4000, 3000), "JPEG", quality=85)),
}

INVALID: dict[str, tuple[str, str, Callable[[], bytes], int, str]] = {
    "empty": ("empty.jpg", "image/jpeg", lambda: b"", 400, "invalid_image"),
    "text_named_jpg": ("notes.jpg", "image/jpeg", lambda: b"just some text, not a picture\n" * 4, 400,
                       "invalid_image"),
    "random_bytes": ("random.bin", "application/octet-stream",
                     lambda: np.random.default_rng(11).bytes(4096), 400, "invalid_image"),
    "truncated_jpeg": ("cut.jpg", "image/jpeg", lambda: _truncated(encode(noise(64, 64, seed=12), "JPEG")), 400,
                       "invalid_image"),
    "truncated_png": ("cut.png", "image/png", lambda: _truncated(encode(noise(64, 64, seed=13), "PNG")), 400,
                      "invalid_image"),
    "svg": ("drawing.svg", "image/svg+xml", lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" '
            b'height="10"><rect width="10" height="10"/></svg>', 415, "unsupported_image_type"),
    "pdf": ("doc.pdf", "application/pdf", lambda: b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n", 415,
            "unsupported_image_type"),
    "png_header_65000": ("huge.png", "image/png", lambda: png_header_only(65_000, 65_000), 413, "image_too_large"),
    "bomb_png_20000": ("bomb.png", "image/png", bomb_png, 413, "image_too_large"),
}


def build_corpus() -> list[Sample]:
    """Every sample, valid ones first."""
    samples = [Sample(name, fn, ct, make()) for name, (fn, ct, make) in VALID.items()]
    samples += [Sample(name, fn, ct, make(), status, code) for name, (fn, ct, make, status, code) in INVALID.items()]
    return samples
