"""POST /v1/predict: uploads (multipart and raw), top_k, and every error status with its exact code and message."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from devkit.asgi import serve
from devkit.checkpoints import CLASSES
from devkit.images import image_bytes

pytestmark = pytest.mark.anyio


def _multipart(data: bytes, name: str = "x.png", ctype: str = "image/png") -> dict:
    return {"files": {"file": (name, data, ctype)}}


async def test_multipart_upload_returns_sorted_predictions(client, png):
    r = await client.post("/v1/predict", **_multipart(png))
    assert r.status_code == 200
    body = r.json()
    preds = body["predictions"]
    assert len(preds) == 3  # default top_k 5 clamped to the 3 classes
    assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)
    assert {p["label"] for p in preds} == set(CLASSES)
    assert all(CLASSES[p["index"]] == p["label"] for p in preds)
    assert sum(p["score"] for p in preds) == pytest.approx(1.0, abs=1e-5)
    assert body["model"]["arch"] == "resnet20"
    assert body["model"]["backend"] == "torch" and body["model"]["device"] == "cpu"
    assert len(body["model"]["checkpoint_sha256"]) == 64
    assert body["timing_ms"]["batch_size"] >= 1


@pytest.mark.parametrize("ctype", ["image/jpeg", "image/png", "application/octet-stream"])
async def test_raw_body_gives_the_same_answer_as_multipart(client, ctype):
    data = image_bytes("JPEG", seed=3)
    multipart = (await client.post("/v1/predict", **_multipart(data, "x.jpg", "image/jpeg"))).json()
    raw = await client.post("/v1/predict", content=data, headers={"Content-Type": ctype})
    assert raw.status_code == 200
    assert raw.json()["predictions"] == multipart["predictions"]


async def test_curl_data_binary_default_content_type_is_accepted(client):
    # curl --data-binary without -H sends application/x-www-form-urlencoded
    data = image_bytes("PNG", seed=4)
    r = await client.post("/v1/predict", content=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200


@pytest.mark.parametrize(("fmt", "mode"), [("WEBP", "RGB"), ("GIF", "RGB"), ("BMP", "RGB"), ("TIFF", "RGB"),
                                           ("PNG", "L"), ("PNG", "RGBA")])
async def test_common_formats_and_modes_decode(client, fmt, mode):
    r = await client.post("/v1/predict", **_multipart(image_bytes(fmt, mode=mode), "x", "application/octet-stream"))
    assert r.status_code == 200, r.text


async def test_exif_orientation_is_applied(client):
    img = Image.open(io.BytesIO(image_bytes("PNG", size=(60, 40), seed=5)))
    upright = io.BytesIO()
    img.save(upright, "JPEG", quality=95)
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored pixels are the upright image turned 90 CCW
    img.transpose(Image.Transpose.ROTATE_90).save(rotated, "JPEG", quality=95, exif=exif)
    a = (await client.post("/v1/predict", **_multipart(upright.getvalue(), "a.jpg", "image/jpeg"))).json()
    b = (await client.post("/v1/predict", **_multipart(rotated.getvalue(), "b.jpg", "image/jpeg"))).json()
    for pa, pb in zip(a["predictions"], b["predictions"], strict=True):
        assert pa["index"] == pb["index"]
        assert pa["score"] == pytest.approx(pb["score"], abs=0.05)  # JPEG re-encoding differs slightly


@pytest.mark.parametrize(("top_k", "expected"), [(1, 1), (2, 2), (3, 3), (50, 3)])
async def test_top_k_is_honoured_and_clamped(client, png, top_k, expected):
    r = await client.post(f"/v1/predict?top_k={top_k}", **_multipart(png))
    assert r.status_code == 200
    assert len(r.json()["predictions"]) == expected


async def test_default_top_k_comes_from_settings(settings_for, png):
    async with serve(settings_for(default_top_k=2)) as (_, client):
        r = await client.post("/v1/predict", **_multipart(png))
    assert len(r.json()["predictions"]) == 2


@pytest.mark.parametrize(("value", "message"), [
    ("0", "query.top_k: Input should be greater than or equal to 1"),
    ("-3", "query.top_k: Input should be greater than or equal to 1"),
    ("1.5", "query.top_k: Input should be a valid integer, unable to parse string as an integer"),
    ("many", "query.top_k: Input should be a valid integer, unable to parse string as an integer"),
])
async def test_bad_top_k_is_422(client, png, value, message):
    r = await client.post(f"/v1/predict?top_k={value}", **_multipart(png))
    assert r.status_code == 422
    assert r.json() == {"error": {"code": "invalid_request", "message": message}}


async def test_undecodable_bytes_are_400(client):
    r = await client.post("/v1/predict", **_multipart(b"definitely not an image", "x.jpg", "image/jpeg"))
    assert r.status_code == 400
    assert r.json() == {"error": {"code": "invalid_image", "message": "not a recognised image format"}}


async def test_truncated_jpeg_is_400(client):
    data = image_bytes("JPEG", size=(64, 64))
    r = await client.post("/v1/predict", content=data[: len(data) // 2], headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 400
    body = r.json()["error"]
    assert body["code"] == "invalid_image"
    assert body["message"].startswith("the image could not be decoded")


async def test_empty_body_is_400(client):
    r = await client.post("/v1/predict", content=b"", headers={"Content-Type": "image/png"})
    assert r.status_code == 400
    assert r.json() == {"error": {"code": "invalid_image", "message": "the file is empty"}}


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'


@pytest.mark.parametrize(("data", "kind"), [(SVG, "XML/SVG"), (b"<svg></svg>", "SVG"), (b"%PDF-1.4\n%...", "PDF")])
async def test_svg_and_pdf_are_415(client, data, kind):
    r = await client.post("/v1/predict", **_multipart(data, "x", "application/octet-stream"))
    assert r.status_code == 415
    assert r.json() == {"error": {"code": "unsupported_image_type", "message":
                                  f"{kind} files are not supported; send a JPEG, PNG, WebP, GIF, BMP or TIFF"}}


@pytest.mark.parametrize("ctype", ["text/plain", "application/json", "application/pdf", "image/svg+xml"])
async def test_unsupported_content_type_is_415(client, png, ctype):
    r = await client.post("/v1/predict", content=png, headers={"Content-Type": ctype})
    assert r.status_code == 415
    message = f"unsupported Content-Type {ctype!r}; send multipart/form-data or a raw image/* body"
    assert r.json() == {"error": {"code": "unsupported_media_type", "message": message}}


async def test_missing_multipart_field_is_422(client, png):
    r = await client.post("/v1/predict", files={"image": ("x.png", png, "image/png")})
    assert r.status_code == 422
    assert r.json() == {"error": {"code": "missing_file",
                                  "message": "the multipart form needs an image file in the field 'file'"}}


async def test_too_many_pixels_is_413(settings_for):
    async with serve(settings_for(max_image_pixels=1000)) as (_, client):
        r = await client.post("/v1/predict", **_multipart(image_bytes("PNG", size=(40, 30))))
    assert r.status_code == 413
    assert r.json() == {"error": {"code": "image_too_large",
                                  "message": "image is 40x30 = 1200 pixels; the limit is 1000"}}


TOO_LARGE = {"error": {"code": "payload_too_large", "message": "the upload is larger than the limit of 2000 bytes"}}


async def test_raw_body_over_the_byte_limit_is_413(settings_for):
    async with serve(settings_for(max_upload_bytes=2000)) as (_, client):
        r = await client.post("/v1/predict", content=b"\xff" * 2001, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 413
    assert r.json() == TOO_LARGE


async def test_streamed_body_without_length_is_cut_at_the_limit(settings_for):
    sent = 0

    async def chunks():  # no Content-Length: the limit must be enforced while reading
        nonlocal sent
        for _ in range(1000):
            sent += 1000
            yield b"\x00" * 1000

    async with serve(settings_for(max_upload_bytes=2000)) as (_, client):
        r = await client.post("/v1/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert r.status_code == 413
    assert r.json() == TOO_LARGE
    assert sent < 1_000_000  # reading stopped early instead of taking the whole body


async def test_multipart_file_over_the_byte_limit_is_413(settings_for):
    async with serve(settings_for(max_upload_bytes=2000)) as (_, client):
        r = await client.post("/v1/predict", **_multipart(b"\x89PNG" + b"\x00" * 5000))
    assert r.status_code == 413
    assert r.json() == TOO_LARGE


async def test_content_length_over_the_limit_is_refused_before_reading(settings_for):
    async with serve(settings_for(max_upload_bytes=2000)) as (_, client):
        r = await client.post("/v1/predict", content=b"\x00" * 10, headers={"Content-Type": "image/png",
                                                                           "Content-Length": "999999"})
    assert r.status_code == 413


async def test_request_id_is_echoed_or_generated(client, png):
    r = await client.post("/v1/predict", headers={"X-Request-ID": "abc-123"}, **_multipart(png))
    assert r.headers["X-Request-ID"] == "abc-123"
    r = await client.post("/v1/predict", **_multipart(png))
    assert len(r.headers["X-Request-ID"]) == 32
    r = await client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["X-Request-ID"] != "bad id with spaces"


async def test_access_log_has_one_line_per_request_with_its_id(client, png, caplog):
    caplog.set_level("INFO", logger="app.access")
    await client.post("/v1/predict", headers={"X-Request-ID": "log-me-1"}, **_multipart(png))
    lines = [r for r in caplog.records if r.name == "app.access" and getattr(r, "request_id", None) == "log-me-1"]
    assert len(lines) == 1
    assert (lines[0].method, lines[0].path, lines[0].status) == ("POST", "/v1/predict", 200)
