"""The service with RESNET_DEVICE=cuda: concurrent requests share forward passes on the GPU and get the CPU's
predictions; the model description and /metrics say where it runs."""

from __future__ import annotations

import asyncio

import pytest

from app.core.config import Settings
from devkit.asgi import serve
from devkit.images import image_bytes

pytestmark = [pytest.mark.cuda, pytest.mark.anyio]

N = 16


def settings(checkpoint, device: str) -> Settings:
    return Settings(checkpoint=checkpoint, device=device, backend="torch", max_batch_size=8, max_batch_delay_ms=3000,
                    decode_threads=4, log_level="warning")


async def predict_all(client) -> list[dict]:
    uploads = [{"file": ("x.png", image_bytes("PNG", seed=i), "image/png")} for i in range(N)]
    responses = await asyncio.gather(*(client.post("/v1/predict", files=f) for f in uploads))
    assert [r.status_code for r in responses] == [200] * N, responses[0].text
    return [r.json() for r in responses]


async def test_cuda_service_batches_concurrent_requests_and_gives_the_cpu_predictions(checkpoint):
    async with serve(settings(checkpoint, "cuda")) as (app, client):
        model = (await client.get("/v1/model")).json()
        gpu = await predict_all(client)
        predictor = app.state.service.predictor
        metrics = (await client.get("/metrics")).text
    assert model["device"] == "cuda:0" and model["backend"] == "torch"
    assert 'device="cuda:0"' in metrics
    assert sum(size * n for size, n in predictor.batch_sizes.items()) == N
    assert predictor.forward_passes < N and max(predictor.batch_sizes) > 1
    assert f"resnet_batch_size_count {float(predictor.forward_passes)}" in metrics
    assert f"resnet_batch_size_sum {float(N)}" in metrics
    assert max(r["timing_ms"]["batch_size"] for r in gpu) > 1

    async with serve(settings(checkpoint, "cpu")) as (_, client):
        cpu = await predict_all(client)
    for a, b in zip(gpu, cpu, strict=True):
        assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
        assert [p["score"] for p in a["predictions"]] == pytest.approx([p["score"] for p in b["predictions"]],
                                                                       abs=1e-3)
