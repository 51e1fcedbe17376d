"""GET /v1/model and POST /v1/model/reload (good, bad, mismatched class index, in-flight requests)."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from devkit.asgi import serve
from devkit.checkpoints import CLASSES, make_checkpoint
from devkit.images import image_bytes
from models import save_checkpoint

pytestmark = pytest.mark.anyio


def _file() -> dict:
    return {"files": {"file": ("x.png", image_bytes("PNG"), "image/png")}}


async def test_model_description(client, checkpoint):
    r = await client.get("/v1/model")
    assert r.status_code == 200
    info = r.json()
    assert info["arch"] == "resnet20"
    assert info["arch_kwargs"] == {"num_classes": 3, "in_channels": 3}
    assert info["classes"] == CLASSES and info["num_classes"] == 3
    assert info["num_parameters"] > 200_000
    assert info["preprocess"]["resize"] == 36 and info["preprocess"]["crop"] == 32
    assert info["feature_layers"] == ["conv1", "layer1", "layer2", "layer3"]
    assert (info["device"], info["backend"]) == ("cpu", "torch")
    assert info["checkpoint_file"] == "model.pt"
    assert str(checkpoint.parent) not in json.dumps(info)  # no server paths leak
    assert info["metrics"] == {"val_top1": 0.5, "epoch": 3}
    assert info["batching"]["max_batch_size"] == 16 and info["batching"]["queue_size"] == 64


async def test_reload_swaps_in_a_new_checkpoint(reload_client, other_checkpoint):
    before = (await reload_client.get("/v1/model")).json()
    r = await reload_client.post("/v1/model/reload", json={"checkpoint": str(other_checkpoint)})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "reloaded"
    assert body["previous_sha256"] == before["checkpoint_sha256"]
    assert body["model"]["classes"] == ["a", "b", "c", "d"]
    pred = (await reload_client.post("/v1/predict?top_k=10", **_file())).json()
    assert len(pred["predictions"]) == 4
    assert pred["model"]["checkpoint_sha256"] == body["model"]["checkpoint_sha256"] != before["checkpoint_sha256"]


async def test_reload_without_body_rereads_the_configured_checkpoint(settings_for, tmp_path):
    path = make_checkpoint(tmp_path / "model.pt")
    async with serve(settings_for(checkpoint=path, api_key="k"), {"X-API-Key": "k"}) as (_, client):
        old = (await client.get("/v1/model")).json()["checkpoint_sha256"]
        make_checkpoint(path, seed=7)  # a new training run replaced the file
        r = await client.post("/v1/model/reload")
        assert r.status_code == 200
        assert r.json()["previous_sha256"] == old
        assert r.json()["model"]["checkpoint_sha256"] != old


async def test_bad_checkpoint_is_422_and_the_old_model_keeps_serving(reload_client, checkpoint, tmp_path):
    bad = tmp_path / "bad.pt"
    data = checkpoint.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # a copy cut short
    before = (await reload_client.get("/v1/model")).json()["checkpoint_sha256"]
    r = await reload_client.post("/v1/model/reload", json={"checkpoint": str(bad)})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_checkpoint"
    assert error["message"].startswith(f"{bad}: not a readable PyTorch checkpoint")
    assert "Traceback" not in r.text
    r = await reload_client.post("/v1/predict", **_file())
    assert r.status_code == 200 and r.json()["model"]["checkpoint_sha256"] == before


async def test_missing_checkpoint_is_422(reload_client, tmp_path):
    r = await reload_client.post("/v1/model/reload", json={"checkpoint": str(tmp_path / "nope.pt")})
    assert r.status_code == 422
    assert r.json() == {"error": {"code": "invalid_checkpoint",
                                  "message": f"{tmp_path / 'nope.pt'}: checkpoint file not found"}}


async def test_class_index_that_disagrees_is_422(reload_client, other_checkpoint, tmp_path):
    index = tmp_path / "classes.json"
    index.write_text(json.dumps({"0": "a", "1": "b", "2": "c", "3": "zebra"}))
    r = await reload_client.post("/v1/model/reload",
                                 json={"checkpoint": str(other_checkpoint), "class_index": str(index)})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_checkpoint"
    assert "class index disagrees with checkpoint" in r.json()["error"]["message"]


async def test_configured_class_index_must_agree_at_startup(settings_for, tmp_path):
    from app.core.errors import StartupError

    index = tmp_path / "classes.json"
    index.write_text(json.dumps({"0": "cat", "1": "dog"}))
    with pytest.raises(StartupError, match="class index disagrees with checkpoint"):
        async with serve(settings_for(class_index=index)):
            pass


async def test_weights_that_do_not_fit_are_422(reload_client, tmp_path):
    model = torch.nn.Linear(2, 2)
    path = save_checkpoint(tmp_path / "wrong.pt", model, arch="resnet20", arch_kwargs={"num_classes": 3},
                           classes=CLASSES, preprocess={"resize": 36, "crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3,
                                                        "interpolation": "bilinear", "color_mode": "RGB"})
    r = await reload_client.post("/v1/model/reload", json={"checkpoint": str(path)})
    assert r.status_code == 422
    assert "weights do not fit resnet20" in r.json()["error"]["message"]


async def test_in_flight_requests_finish_on_the_old_model(settings_for, gated, other_checkpoint):
    async with serve(settings_for(max_batch_delay_ms=0, api_key="k"), {"X-API-Key": "k"}) as (_, client):
        old_backend = gated[0]
        old_backend.armed = True
        in_flight = asyncio.create_task(client.post("/v1/predict?top_k=10", **_file()))
        await asyncio.to_thread(old_backend.entered.wait, 10)
        r = await client.post("/v1/model/reload", json={"checkpoint": str(other_checkpoint)})
        assert r.status_code == 200
        new_sha = r.json()["model"]["checkpoint_sha256"]
        old_backend.release.set()
        old = (await in_flight).json()
        assert len(old["predictions"]) == 3 and old["model"]["checkpoint_sha256"] != new_sha
        new = (await client.post("/v1/predict?top_k=10", **_file())).json()
        assert len(new["predictions"]) == 4 and new["model"]["checkpoint_sha256"] == new_sha


async def test_reload_body_must_be_an_object(reload_client):
    r = await reload_client.post("/v1/model/reload", json={"checkpoint": 5})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request"
