"""Error shape everywhere: unknown routes, wrong methods, and unexpected exceptions (a generic 500, no trace)."""

from __future__ import annotations

import logging

import pytest

from app.services.inference import InferenceService

pytestmark = pytest.mark.anyio


async def test_unknown_route_is_404_in_the_error_shape(client):
    r = await client.get("/v2/nothing")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "message": "Not Found"}}


async def test_wrong_method_is_405_in_the_error_shape(client):
    r = await client.get("/v1/predict")
    assert r.status_code == 405
    assert r.json() == {"error": {"code": "method_not_allowed", "message": "Method Not Allowed"}}


async def test_malformed_multipart_is_400(client):
    r = await client.post("/v1/predict", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_request"


async def test_unexpected_exception_is_a_generic_500_and_is_logged(client, png, monkeypatch, caplog):
    async def explode(self, *args, **kwargs):
        raise RuntimeError("secret detail in /srv/private/path.py")

    monkeypatch.setattr(InferenceService, "classify", explode)
    caplog.set_level(logging.ERROR, logger="app")
    files = {"file": ("x.png", png, "image/png")}
    r = await client.post("/v1/predict", headers={"X-Request-ID": "boom-1"}, files=files)
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert "secret" not in r.text and "Traceback" not in r.text
    assert r.headers["X-Request-ID"] == "boom-1"
    logged = [rec for rec in caplog.records if rec.exc_info]
    assert logged and "secret detail" in str(logged[0].exc_info[1])


async def test_failing_model_is_a_500_without_details(settings_for, serve_app, png, monkeypatch):
    def broken(batch):
        raise RuntimeError("CUDA out of memory at /opt/torch/secret")

    async with serve_app(settings_for()) as (app, client):
        monkeypatch.setattr(app.state.service.manager.current.backend, "predict", broken)
        r = await client.post("/v1/predict", files={"file": ("x.png", png, "image/png")})
        assert r.status_code == 500
        assert r.json() == {"error": {"code": "internal_error", "message": "internal server error"}}
        monkeypatch.undo()
        r = await client.post("/v1/predict", files={"file": ("x.png", png, "image/png")})
        assert r.status_code == 200  # the inference thread survived
