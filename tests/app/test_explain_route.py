"""`POST /v1/explain` as a client sees it: PNG or JSON, target/method/layer, the same inputs and errors as
`/v1/predict`, the API key, its own concurrency limit (503 + Retry-After), metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from PIL import Image

import app.services.explain as explain_service
from app.core.config import Settings
from devkit.asgi import serve
from devkit.images import image_bytes

pytestmark = pytest.mark.anyio
KEY = "explain-key"
JSON = {"Accept": "application/json"}


@pytest.fixture
def settings_for(checkpoint, tmp_path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        base = {"checkpoint": checkpoint, "device": "cpu", "backend": "torch", "torch_threads": 1,
                "decode_threads": 2, "max_batch_delay_ms": 2, "log_level": "warning"}
        return Settings(**{**base, **overrides})

    return make


@pytest.fixture
async def client(settings_for) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(settings_for()) as (_, c):
        yield c


def upload(data: bytes | None = None) -> dict:
    return {"files": {"file": ("x.png", data if data is not None else image_bytes("PNG", seed=4), "image/png")}}


async def test_default_answer_is_a_png_overlay_of_the_top1_class(client):
    top1 = (await client.post("/v1/predict", **upload())).json()["predictions"][0]
    r = await client.post("/v1/explain", **upload())
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(r.content))
    assert picture.mode == "RGB" and picture.height >= 224 and picture.width > picture.height  # crop + colour scale
    assert r.headers["x-explain-target"] == str(top1["index"])
    assert float(r.headers["x-explain-score"]) == pytest.approx(top1["score"], abs=1e-5)
    assert (r.headers["x-explain-method"], r.headers["x-explain-layer"]) == ("gradcam", "layer3")
    assert r.headers["x-request-id"]


async def test_json_answer_has_the_heatmap_at_crop_size_and_the_top5(client):
    predicted = (await client.post("/v1/predict", **upload())).json()["predictions"]
    r = await client.post("/v1/explain", headers=JSON, **upload())
    body = r.json()
    assert set(body) == {"target", "method", "layer", "size", "heatmap", "predictions"}
    assert [(p["label"], p["index"]) for p in body["predictions"]] == [(p["label"], p["index"]) for p in predicted]
    assert [p["score"] for p in body["predictions"]] == pytest.approx([p["score"] for p in predicted], abs=1e-5)
    assert body["target"]["index"] == predicted[0]["index"] and body["size"] == [32, 32]
    values = [v for row in body["heatmap"] for v in row]
    assert len(body["heatmap"]) == 32 and len(values) == 32 * 32
    assert min(values) >= 0 and max(values) <= 1


async def test_target_by_label_equals_target_by_index(client):
    by_label = (await client.post("/v1/explain", params={"target": "dog"}, headers=JSON, **upload())).json()
    by_index = (await client.post("/v1/explain", params={"target": "1"}, headers=JSON, **upload())).json()
    assert by_label["target"]["label"] == "dog" and by_label["target"]["index"] == 1
    assert by_label["heatmap"] == by_index["heatmap"]


@pytest.mark.parametrize("target", ["3", "-1", "cow", "1.5", ""])
async def test_unknown_target_is_422_naming_the_range(client, target):
    r = await client.post("/v1/explain", params={"target": target}, **upload())
    assert r.status_code == 422
    assert r.json()["error"] == {"code": "unknown_target", "message": (
        f"unknown target {target!r}; give a class index 0..2 or one of the class labels (GET /v1/model lists them)")}


async def test_method_and_layer_are_checked(client):
    r = await client.post("/v1/explain", params={"layer": "layer4"}, **upload())
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_layer"
    r = await client.post("/v1/explain", params={"method": "saliency"}, **upload())
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = await client.post("/v1/explain", params={"method": "layercam", "layer": "layer1"}, headers=JSON, **upload())
    assert (r.json()["method"], r.json()["layer"]) == ("layercam", "layer1")


async def test_same_input_errors_as_predict(client):
    raw = image_bytes("PNG", seed=4)
    r = await client.post("/v1/explain", content=raw, headers={"Content-Type": "image/png", **JSON})
    assert r.status_code == 200 and r.json()["size"] == [32, 32]  # a raw body works too
    for kwargs in ({"files": {"file": ("x.png", b"not an image", "image/png")}},
                   {"files": {"other": ("x.png", raw, "image/png")}},
                   {"json": {"image": "x"}}):
        mine, theirs = await client.post("/v1/explain", **kwargs), await client.post("/v1/predict", **kwargs)
        assert (mine.status_code, mine.json()["error"]["code"]) == (theirs.status_code, theirs.json()["error"]["code"])


async def test_upload_limit_applies(settings_for):
    async with serve(settings_for(max_upload_bytes=200)) as (_, client):
        r = await client.post("/v1/explain", **upload(image_bytes("PNG", size=(64, 64), seed=1)))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


async def test_api_key_is_required_like_predict(settings_for):
    async with serve(settings_for(api_key=KEY)) as (_, client):
        assert (await client.post("/v1/explain", **upload())).status_code == 401
        r = await client.post("/v1/explain", headers={"X-API-Key": KEY}, **upload())
        assert r.status_code == 200


async def test_explanations_over_the_limit_get_503_and_predictions_go_on(settings_for, monkeypatch):
    started, release = threading.Event(), threading.Event()
    real = explain_service.explain

    def slow_explain(*args, **kwargs):
        started.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(explain_service, "explain", slow_explain)
    async with serve(settings_for(explain_concurrency=1)) as (_, client):
        first = asyncio.create_task(client.post("/v1/explain", **upload()))
        await asyncio.to_thread(started.wait, 30)
        refused = await client.post("/v1/explain", **upload())
        predicted = await client.post("/v1/predict", **upload())  # explanations never hold predictions up
        release.set()
        assert (await first).status_code == 200
        again = await client.post("/v1/explain", **upload())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == {"code": "overloaded", "message": (
        "all 1 explanation slots are busy (RESNET_EXPLAIN_CONCURRENCY); retry shortly")}
    assert predicted.status_code == 200 and again.status_code == 200


async def test_latency_histogram_in_metrics(client):
    await client.post("/v1/explain", params={"method": "layercam"}, **upload())
    text = (await client.get("/metrics")).text
    assert 'resnet_explain_seconds_count{method="layercam"} 1.0' in text
    assert 'resnet_requests_total{endpoint="/v1/explain",method="POST",status="200"} 1.0' in text


async def test_openapi_lists_the_served_layers_and_classes(client):
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/explain"]["post"]
    params = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert params["layer"]["enum"] == ["conv1", "layer1", "layer2", "layer3"]
    assert params["layer"]["default"] == "layer3"
    assert params["method"]["enum"] == ["gradcam", "layercam"]
    assert params["target"]["anyOf"] == [{"type": "integer", "minimum": 0, "maximum": 2},
                                         {"type": "string", "enum": ["cat", "dog", "bird"]}]
    assert set(operation["responses"]["200"]["content"]) == {"image/png", "application/json"}
    assert {"401", "413", "415", "422", "503"} <= set(operation["responses"])
