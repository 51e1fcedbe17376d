"""Errors: the catalogue (app/core/errors.py) maps project exceptions to one status and code each, with exact
messages; the handlers (app/api/errors.py) give every error that shape, also for unknown routes, wrong methods
and unexpected exceptions (a generic 500, no trace)."""

from __future__ import annotations

import logging

import pytest

from app.core.errors import (
    DeadlineExceededError,
    NotReadyError,
    QueueFullError,
    ServiceConfigError,
    UnknownLayerError,
    UploadTooLargeError,
    api_error_from,
)
from app.services.inference import InferenceService
from models import CheckpointError, ImageDecodeError, ImageTooLargeError, UnsupportedImageTypeError

pytestmark = pytest.mark.anyio


# --- the catalogue ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("exc", "status", "code", "message"), [
    (ImageDecodeError("bad bytes"), 400, "invalid_image", "bad bytes"),
    (ImageTooLargeError("too many pixels"), 413, "image_too_large", "too many pixels"),
    (UploadTooLargeError(10), 413, "payload_too_large", "the upload is larger than the limit of 10 bytes"),
    (UnsupportedImageTypeError("SVG no"), 415, "unsupported_image_type", "SVG no"),
    (CheckpointError("x.pt: broken"), 422, "invalid_checkpoint", "x.pt: broken"),
    (ServiceConfigError("no CUDA"), 422, "invalid_configuration", "no CUDA"),
    (UnknownLayerError("fc", ["conv1", "layer1"]), 422, "unknown_layer",
     "unknown layer 'fc'; choose one of conv1, layer1"),
    (NotReadyError("x"), 503, "not_ready", "the model is not loaded yet; retry shortly"),
    (QueueFullError("x"), 503, "overloaded", "the inference queue is full; retry shortly"),
    (DeadlineExceededError(2.5), 504, "timeout", "the request did not finish within 2.5 s"),
])
def test_exceptions_map_to_their_status(exc, status, code, message):
    err = api_error_from(exc)
    assert (err.status, err.code, err.message) == (status, code, message)


def test_503s_carry_retry_after():
    assert api_error_from(QueueFullError("x")).headers == {"Retry-After": "1"}
    assert api_error_from(NotReadyError("x")).headers == {"Retry-After": "1"}


# --- the handlers -----------------------------------------------------------------------------------------------

async def test_unknown_route_is_404_in_the_error_shape(client):
    r = await client.get("/v1/nothing")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    r = await client.get("/v2/nothing")  # the Open Inference Protocol's paths answer in its own shape
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}


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
