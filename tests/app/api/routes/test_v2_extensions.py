"""REST `/v2` additions: the protocol's JSON health bodies (what KServe's SDK parses), Triton's model configuration
and statistics extensions, in-process."""

from __future__ import annotations

import base64
import json

import pytest

from devkit.asgi import serve
from devkit.images import image_bytes

pytestmark = pytest.mark.anyio
MODEL = "resnet"


def _settings(checkpoint, **overrides):
    from app.core.config import Settings

    base = {"checkpoint": checkpoint, "device": "cpu", "backend": "torch", "torch_threads": 1, "decode_threads": 2,
            "max_batch_delay_ms": 2, "log_level": "warning", "grpc_port": 0}
    return Settings(**{**base, **overrides})


async def test_health_bodies(checkpoint):
    async with serve(_settings(checkpoint)) as (app, client):
        assert (await client.get("/v2/health/live")).json() == {"live": True}
        assert (await client.get("/v2/health/ready")).json() == {"ready": True}
        for path in (f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}/versions/1/ready"):
            assert (await client.get(path)).json() == {"name": MODEL, "ready": True}
        r = await client.get("/v2/models/other/ready")
        assert r.status_code == 404 and set(r.json()) == {"error"}
        await app.state.service.manager.close()  # as shutdown does: not ready from here
        r = await client.get("/v2/health/ready")
        assert r.status_code == 503 and set(r.json()) == {"error"}
        assert (await client.get("/v2/health/live")).json() == {"live": True}


async def test_model_config_follows_the_settings(checkpoint):
    settings = _settings(checkpoint, max_batch_files=8, max_batch_size=4, max_batch_delay_ms=7.5)
    async with serve(settings) as (_, client):
        config = (await client.get(f"/v2/models/{MODEL}/config")).json()
        assert config == (await client.get(f"/v2/models/{MODEL}/versions/1/config")).json()
    assert config["name"] == MODEL and config["platform"] == "pytorch_libtorch" and config["backend"] == "pytorch"
    assert config["max_batch_size"] == 8
    assert config["input"] == [
        {"name": "image", "data_type": "TYPE_STRING", "format": "FORMAT_NONE", "dims": [1], "reshape": {"shape": []},
         "optional": True},
        {"name": "input", "data_type": "TYPE_FP32", "format": "FORMAT_NCHW", "dims": [3, 32, 32], "optional": True}]
    assert config["output"] == [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [3]}]
    assert config["dynamic_batching"] == {"preferred_batch_size": [4], "max_queue_delay_microseconds": 7500}


async def test_statistics_count_successes_failures_and_batches(checkpoint):
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                        "data": [base64.b64encode(image_bytes("PNG", seed=i)).decode() for i in range(2)]}]}
    async with serve(_settings(checkpoint)) as (_, client):
        empty = (await client.get(f"/v2/models/{MODEL}/stats")).json()["model_stats"][0]
        assert empty["inference_stats"]["success"] == {"count": 0, "ns": 0} and empty["last_inference"] == 0
        assert (await client.post(f"/v2/models/{MODEL}/infer", content=json.dumps(body))).status_code == 200
        bad = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}]}
        assert (await client.post(f"/v2/models/{MODEL}/infer", content=json.dumps(bad))).status_code == 400
        stats = (await client.get(f"/v2/models/{MODEL}/versions/1/stats")).json()["model_stats"][0]
        assert (await client.get("/v2/models/other/stats")).status_code == 404
    inference = stats["inference_stats"]
    assert (stats["name"], stats["version"], stats["inference_count"]) == (MODEL, "1", 2)
    assert inference["success"]["count"] == 1 and inference["fail"]["count"] == 1
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert inference[phase]["count"] == 1
    assert inference["compute_infer"]["ns"] > 0 and inference["success"]["ns"] >= inference["compute_infer"]["ns"]
    assert stats["execution_count"] == sum(b["compute_infer"]["count"] for b in stats["batch_stats"]) >= 1
    assert stats["last_inference"] > 0


async def test_both_inputs_are_served_from_the_tensor(checkpoint):
    """perf_analyzer's generated data fills both optional inputs; the tensor is used, the images not decoded."""
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": [0.0] * 3072}
    junk = {"name": "image", "datatype": "BYTES", "shape": [1, 1], "data": [base64.b64encode(b"random").decode()]}
    async with serve(_settings(checkpoint)) as (_, client):
        alone = await client.post(f"/v2/models/{MODEL}/infer", content=json.dumps({"inputs": [tensor]}))
        both = await client.post(f"/v2/models/{MODEL}/infer", content=json.dumps({"inputs": [junk, tensor]}))
        junk["shape"] = [2, 1]
        junk["data"] = junk["data"] * 2
        mismatch = await client.post(f"/v2/models/{MODEL}/infer", content=json.dumps({"inputs": [junk, tensor]}))
    assert both.status_code == 200 and both.json()["outputs"] == alone.json()["outputs"]
    assert mismatch.status_code == 400 and "different batch sizes" in mismatch.json()["error"]
