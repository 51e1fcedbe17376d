"""The serving path (app/services/inference.py, what the routes call) through HTTP: dynamic batching, overload
(503), deadlines (504), draining on shutdown."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.main import create_app
from devkit.asgi import serve
from devkit.images import image_bytes
from devkit.waiting import wait_until

pytestmark = pytest.mark.anyio


def _file(seed: int = 0) -> dict:
    return {"files": {"file": ("x.png", image_bytes("PNG", seed=seed), "image/png")}}


async def test_concurrent_requests_are_served_in_fewer_forward_passes(settings_for):
    async with serve(settings_for(max_batch_size=8, max_batch_delay_ms=3000)) as (app, client):
        responses = await asyncio.gather(*(client.post("/v1/predict", **_file(i)) for i in range(8)))
        predictor = app.state.service.predictor
        metrics = (await client.get("/metrics")).text
    assert [r.status_code for r in responses] == [200] * 8
    assert predictor.forward_passes < 8
    assert sum(size * n for size, n in predictor.batch_sizes.items()) == 8
    assert max(r.json()["timing_ms"]["batch_size"] for r in responses) > 1
    assert f"resnet_batch_size_count {float(predictor.forward_passes)}" in metrics
    assert "resnet_batch_size_sum 8.0" in metrics


async def test_batched_and_single_predictions_agree(settings_for):
    images = [_file(i) for i in range(4)]
    async with serve(settings_for(max_batch_size=1)) as (_, client):
        single = [(await client.post("/v1/predict", **f)).json()["predictions"] for f in images]
    async with serve(settings_for(max_batch_size=4, max_batch_delay_ms=3000)) as (_, client):
        batched = [r.json()["predictions"] for r in await asyncio.gather(*(client.post("/v1/predict", **f)
                                                                           for f in images))]
    for a, b in zip(single, batched, strict=True):
        assert [p["index"] for p in a] == [p["index"] for p in b]
        assert [p["score"] for p in a] == pytest.approx([p["score"] for p in b], abs=1e-5)


async def _one_running_one_queued(app, client, backend) -> tuple[asyncio.Task, asyncio.Task]:
    """Hold the model on a first request and queue a second behind it; return both (unfinished) requests."""
    backend.armed = True
    running = asyncio.create_task(client.post("/v1/predict", **_file(1)))
    await asyncio.to_thread(backend.entered.wait, 10)
    queued = asyncio.create_task(client.post("/v1/predict", **_file(2)))
    await wait_until(lambda: app.state.service.predictor.queue_depth == 1)
    return running, queued


async def test_full_queue_is_503_with_retry_after(settings_for, gated):
    async with serve(settings_for(max_batch_size=1, queue_size=1, max_batch_delay_ms=0)) as (app, client):
        backend = gated[0]
        first, second = await _one_running_one_queued(app, client, backend)
        r = await client.post("/v1/predict", **_file(3))
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "1"
        assert r.json() == {"error": {"code": "overloaded", "message": "the inference queue is full; retry shortly"}}
        backend.release.set()
        assert (await first).status_code == 200
        assert (await second).status_code == 200


async def test_request_past_its_deadline_is_504(settings_for, gated):
    async with serve(settings_for(request_timeout_s=0.25, max_batch_delay_ms=0)) as (_, client):
        gated[0].armed = True
        r = await client.post("/v1/predict", **_file())
        gated[0].release.set()
    assert r.status_code == 504
    assert r.json() == {"error": {"code": "timeout", "message": "the request did not finish within 0.25 s"}}


async def test_shutdown_finishes_in_flight_requests(settings_for, gated):
    app = create_app(settings_for(max_batch_size=1, max_batch_delay_ms=0))
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        backend = gated[0]
        running, queued = await _one_running_one_queued(app, client, backend)
        shutdown = asyncio.create_task(lifespan.__aexit__(None, None, None))
        await wait_until(lambda: not app.state.service.predictor.accepting)
        late = await client.post("/v1/predict", **_file(3))
        assert late.status_code == 503 and late.json()["error"]["code"] == "not_ready"
        backend.release.set()
        assert (await running).status_code == 200
        assert (await queued).status_code == 200
        await shutdown
