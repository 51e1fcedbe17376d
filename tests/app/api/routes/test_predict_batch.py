"""POST /v1/predict/batch: per-file results in order; a bad file fails alone."""

from __future__ import annotations

import pytest

from devkit.asgi import serve
from devkit.images import image_bytes

pytestmark = pytest.mark.anyio


def _files(*items: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


async def test_results_come_in_request_order_and_match_single_predictions(client):
    images = [image_bytes("PNG", seed=s) for s in range(4)]
    r = await client.post("/v1/predict/batch?top_k=2", files=_files(*((f"{i}.png", d) for i, d in enumerate(images))))
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["index"] for x in results] == [0, 1, 2, 3]
    assert [x["filename"] for x in results] == ["0.png", "1.png", "2.png", "3.png"]
    for data, result in zip(images, results, strict=True):
        single = (await client.post("/v1/predict?top_k=2", files={"file": ("x.png", data, "image/png")})).json()
        assert result["error"] is None
        assert [p["index"] for p in result["predictions"]] == [p["index"] for p in single["predictions"]]
        for a, b in zip(result["predictions"], single["predictions"], strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)


async def test_a_bad_file_gets_an_error_entry_and_the_others_succeed(client):
    files = _files(("good.png", image_bytes("PNG")), ("bad.jpg", b"garbage"), ("doc.pdf", b"%PDF-1.7"),
                   ("good2.jpg", image_bytes("JPEG", seed=2)))
    r = await client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert results[0]["error"] is None and len(results[0]["predictions"]) == 3
    assert results[1] == {"index": 1, "filename": "bad.jpg", "predictions": None,
                          "error": {"code": "invalid_image", "message": "not a recognised image format"}}
    assert results[2]["error"] == {"code": "unsupported_image_type",
                                   "message": "PDF files are not supported; send a JPEG, PNG, WebP, GIF, BMP or TIFF"}
    assert results[3]["error"] is None


async def test_an_oversized_file_is_an_error_entry(settings_for):
    async with serve(settings_for(max_upload_bytes=3000)) as (_, client):
        files = _files(("big.bin", b"\x00" * 4000), ("ok.png", image_bytes("PNG", size=(16, 16))))
        r = await client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert results[0]["error"] == {"code": "payload_too_large",
                                   "message": "the upload is larger than the limit of 3000 bytes"}
    assert results[1]["predictions"] is not None


async def test_more_files_than_allowed_is_422(settings_for):
    async with serve(settings_for(max_batch_files=2)) as (_, client):
        files = _files(*((f"{i}.png", image_bytes("PNG", seed=i)) for i in range(3)))
        r = await client.post("/v1/predict/batch", files=files)
    assert r.status_code == 422
    assert r.json() == {"error": {"code": "too_many_files", "message": "too many files; the limit is 2 per request"}}


async def test_no_files_is_422(client):
    r = await client.post("/v1/predict/batch", data={"other": "x"}, files={"dummy": ("a", b"x", "text/plain")})
    assert r.status_code == 422
    assert r.json()["error"] == {"code": "missing_file",
                                 "message": "the multipart form needs an image file in the field 'files'"}


async def test_batch_needs_multipart(client):
    r = await client.post("/v1/predict/batch", content=image_bytes("PNG"), headers={"Content-Type": "image/png"})
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"


async def test_batch_top_k_below_one_is_422(client):
    r = await client.post("/v1/predict/batch?top_k=0", files=_files(("a.png", image_bytes("PNG"))))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request"
