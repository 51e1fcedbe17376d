"""GET /health/live and /health/ready: live at once, ready only once the model is loaded and warmed up."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from app.main import create_app
from app.services.model_manager import ModelManager

pytestmark = pytest.mark.anyio
NOT_READY = {"error": {"code": "not_ready", "message": "the model is not loaded yet; retry shortly"}}


async def test_ready_is_503_while_loading_then_200(settings_for, monkeypatch, png):
    loading, release = threading.Event(), threading.Event()
    original = ModelManager.load

    def slow_load(self, *args, **kwargs):
        loading.set()
        release.wait(30)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ModelManager, "load", slow_load)
    app = create_app(settings_for())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        r = await client.get("/health/ready")  # before startup
        assert r.status_code == 503 and r.json() == NOT_READY
        lifespan = app.router.lifespan_context(app)
        starting = asyncio.create_task(lifespan.__aenter__())
        await asyncio.to_thread(loading.wait, 10)
        r = await client.get("/health/ready")  # while loading
        assert r.status_code == 503 and r.json() == NOT_READY
        assert r.headers["Retry-After"] == "1"
        assert (await client.get("/health/live")).json() == {"status": "ok"}
        r = await client.post("/v1/predict", files={"file": ("x.png", png, "image/png")})
        assert r.status_code == 503 and r.json() == NOT_READY
        release.set()
        await starting
        try:
            r = await client.get("/health/ready")
            assert r.status_code == 200
            body = r.json()
            assert body["status"] == "ready" and body["backend"] == "torch" and body["device"] == "cpu"
            assert len(body["checkpoint_sha256"]) == 64
        finally:
            await lifespan.__aexit__(None, None, None)
        assert (await client.get("/health/ready")).status_code == 503  # after shutdown


async def test_live_answers_without_a_model(settings_for):
    app = create_app(settings_for())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        r = await client.get("/health/live")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_health_is_open_when_an_api_key_is_set(settings_for, serve_app):
    async with serve_app(settings_for(api_key="k")) as (_, client):
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 200


def test_importing_app_main_loads_no_model(monkeypatch):
    import importlib

    import app.main

    calls = []
    monkeypatch.setattr(ModelManager, "load", lambda *a, **k: calls.append(a))
    importlib.reload(app.main)
    assert calls == []
    assert app.main.app.state.service is None
