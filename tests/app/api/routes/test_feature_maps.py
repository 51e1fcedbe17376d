"""POST /v1/feature-maps: a PNG grid of one layer's activations."""

from __future__ import annotations

import io

import pytest
from PIL import Image

pytestmark = pytest.mark.anyio


def _file(png: bytes) -> dict:
    return {"files": {"file": ("x.png", png, "image/png")}}


@pytest.mark.parametrize(("layer", "shape"), [("conv1", "16x32x32"), ("layer1", "16x32x32"), ("layer2", "32x16x16"),
                                              ("layer3", "64x8x8")])
async def test_every_feature_layer_renders(client, png, layer, shape):
    r = await client.post(f"/v1/feature-maps?layer={layer}&channels=9", **_file(png))
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.headers["X-Feature-Shape"] == shape and r.headers["X-Feature-Channels"] == "9"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "PNG" and img.mode == "L"
    assert img.size[0] == img.size[1]  # 9 tiles: a 3x3 grid


async def test_channels_are_capped_by_the_layer(client, png):
    r = await client.post("/v1/feature-maps?layer=conv1&channels=64", **_file(png))
    assert r.status_code == 200 and r.headers["X-Feature-Channels"] == "16"


async def test_raw_body_works_too(client, png):
    r = await client.post("/v1/feature-maps?layer=layer1", content=png, headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"


async def test_unknown_layer_is_422(client, png):
    r = await client.post("/v1/feature-maps?layer=layer4", **_file(png))
    assert r.status_code == 422
    assert r.json() == {"error": {"code": "unknown_layer",
                                  "message": "unknown layer 'layer4'; choose one of conv1, layer1, layer2, layer3"}}


@pytest.mark.parametrize("channels", ["0", "65", "two"])
async def test_bad_channel_count_is_422(client, png, channels):
    r = await client.post(f"/v1/feature-maps?channels={channels}", **_file(png))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


async def test_undecodable_image_is_400(client):
    r = await client.post("/v1/feature-maps", **_file(b"nope"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image"
