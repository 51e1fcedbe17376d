"""The app in this process: its lifespan running (model loaded, inference thread started) and an httpx client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from app.core.config import Settings
from app.main import create_app


@contextlib.asynccontextmanager
async def serve(settings: Settings, headers: dict[str, str] | None = None,
                ) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    """The app with its lifespan running, and an httpx client talking to it in-process (sending `headers`)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as client:
            yield application, client


async def every_endpoint(images: list[bytes], settings: Settings, reload_to: str | None = None) -> dict[str, Any]:
    """Every endpoint once: predictions one by one and as one batch call, model info, health, metrics, feature maps."""
    app = create_app(settings)
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"X-API-Key": settings.api_key_value} if settings.api_key_value else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            out["ready"] = (await client.get("/health/ready")).status_code
            single = []
            for data in images:
                r = await client.post("/v1/predict", files={"file": ("x.png", data, "image/png")},
                                      params={"top_k": 10})
                assert r.status_code == 200, r.text
                single.append(r.json())
            out["single"] = single
            predictor = app.state.service.predictor
            before = predictor.forward_passes
            files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
            r = await client.post("/v1/predict/batch", files=files, params={"top_k": 10})
            assert r.status_code == 200, r.text
            out["batch"], out["batch_passes"] = r.json()["results"], predictor.forward_passes - before
            out["info"] = (await client.get("/v1/model")).json()
            out["metrics"] = (await client.get("/metrics")).text
            fm = await client.post("/v1/feature-maps", params={"layer": "layer1", "channels": 4},
                                   files={"file": ("x.png", images[0], "image/png")})
            out["feature_maps"] = (fm.status_code, fm.headers.get("content-type"), fm.headers.get("X-Feature-Shape"))
            if reload_to:
                r = await client.post("/v1/model/reload", json={"checkpoint": reload_to})
                assert r.status_code == 200, r.text
                out["reloaded"] = r.json()["model"]
                r = await client.post("/v1/predict", files={"file": ("x.png", images[0], "image/png")})
                out["after_reload"] = r.json()
    return out
