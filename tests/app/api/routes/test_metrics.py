"""GET /metrics: Prometheus text with requests, latencies, batching, queue depth and model identity."""

from __future__ import annotations

import pytest

from models.accuracy import AccuracyRecord

pytestmark = pytest.mark.anyio


async def test_metrics_cover_requests_latencies_batches_and_model(client, png):
    await client.post("/v1/predict", files={"file": ("x.png", png, "image/png")})
    await client.post("/v1/predict", content=b"junk", headers={"Content-Type": "image/png"})
    sha = (await client.get("/v1/model")).json()["checkpoint_sha256"]
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'resnet_requests_total{endpoint="/v1/predict",method="POST",status="200"} 1.0' in text
    assert 'resnet_requests_total{endpoint="/v1/predict",method="POST",status="400"} 1.0' in text
    assert 'resnet_request_duration_seconds_count{endpoint="/v1/predict"} 2.0' in text
    assert "resnet_queue_wait_seconds_count 1.0" in text
    assert "resnet_preprocess_seconds_count 2.0" in text  # the junk upload was decoded too, and failed
    assert "resnet_inference_seconds_count 1.0" in text
    assert "resnet_batch_size_count 1.0" in text
    assert "resnet_queue_depth 0.0" in text
    assert (f'resnet_model_info{{arch="resnet20",backend="torch",checkpoint_sha256="{sha}",device="cpu",'
            'precision="fp32"} 1.0' in text)
    assert "resnet_model_export_accuracy{" not in text  # the exact fp32 path measured nothing


async def test_each_app_has_its_own_registry(settings_for, serve_app, png):
    async with serve_app(settings_for()) as (_, first), serve_app(settings_for()) as (_, second):
        await first.post("/v1/predict", files={"file": ("x.png", png, "image/png")})
        text = (await second.get("/metrics")).text
    assert 'endpoint="/v1/predict"' not in text


async def test_metrics_open_by_default_even_with_an_api_key(settings_for, serve_app):
    async with serve_app(settings_for(api_key="k")) as (_, client):
        assert (await client.get("/metrics")).status_code == 200


async def test_protected_metrics_need_the_key(settings_for, serve_app):
    async with serve_app(settings_for(api_key="k", protect_metrics=True)) as (_, client):
        r = await client.get("/metrics")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert (await client.get("/metrics", headers={"X-API-Key": "k"})).status_code == 200


async def test_a_reload_replaces_the_model_series(reload_client, other_checkpoint):
    old = (await reload_client.get("/v1/model")).json()["checkpoint_sha256"]
    assert (await reload_client.post("/v1/model/reload", json={"checkpoint": str(other_checkpoint)})).status_code == 200
    text = (await reload_client.get("/metrics")).text
    assert old not in text and len([x for x in text.splitlines() if x.startswith("resnet_model_info{")]) == 1
    assert 'resnet_model_reloads_total{result="success"} 1.0' in text


def test_export_accuracy_is_a_gauge_per_measure():
    from app.core.metrics import ServiceMetrics

    m = ServiceMetrics()
    m.set_model("resnet20", "abc", "onnxruntime", "cpu", "int8",
                AccuracyRecord(top1_fp32=0.953, top1=0.951, agreement=0.995, eval_size=10000))
    text = m.exposition()[0].decode()
    assert 'precision="int8"} 1.0' in text
    assert 'resnet_model_export_accuracy{measure="agreement"} 0.995' in text
    assert 'resnet_model_export_accuracy{measure="top1_fp32"} 0.953' in text
    assert "resnet_model_export_eval_size 10000.0" in text
    m.set_model("resnet20", "abc", "torch", "cpu")  # back to fp32: the measures go
    text = m.exposition()[0].decode()
    assert "resnet_model_export_accuracy{" not in text and "resnet_model_export_eval_size 0.0" in text
    assert 'precision="int8"' not in text
