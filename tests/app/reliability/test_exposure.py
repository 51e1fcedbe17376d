"""Exposure: the API key (constant-time, before any work), what stays open, CORS and limits by default."""

from __future__ import annotations

import ast
import inspect

import httpx
import pytest

from app.api import deps
from app.core.config import Settings
from devkit.asgi import serve
from devkit.images import image_bytes
from tests.app.reliability.servers import assert_error

KEY = "k3y-0123456789"
PNG = image_bytes("PNG")
PROTECTED = [("/v1/predict", {"files": {"file": ("x.png", PNG, "image/png")}}),
             ("/v1/predict/batch", {"files": [("files", ("x.png", PNG, "image/png"))]}),
             ("/v1/feature-maps", {"files": {"file": ("x.png", PNG, "image/png")}}),
             ("/v1/model/reload", {"json": {}})]


def test_the_key_is_compared_in_constant_time():
    tree = ast.parse(inspect.getsource(deps.check_api_key))
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "hmac.compare_digest" in calls
    compares = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert all(" is None" in c for c in compares), compares  # no == or != on secrets


def test_limits_are_on_and_cors_off_by_default():
    fields = Settings.model_fields
    assert fields["max_upload_bytes"].default == 20 * 1024 * 1024
    assert fields["max_image_pixels"].default == 40_000_000
    assert fields["max_batch_files"].default == 32
    assert fields["cors_origins"].default == []
    assert fields["api_key"].default is None and fields["protect_metrics"].default is False


@pytest.mark.slow
def test_no_cors_headers_from_a_default_server(default_server):
    r = httpx.options(f"{default_server.url}/v1/predict", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, timeout=30)
    assert not any(h.lower().startswith("access-control-") for h in r.headers)


@pytest.mark.anyio
@pytest.mark.parametrize("protect_metrics", [False, True])
async def test_the_key_guards_exactly_the_working_endpoints(reliability_checkpoint, protect_metrics):
    settings = Settings(checkpoint=reliability_checkpoint, device="cpu", backend="torch", torch_threads=1,
                        decode_threads=1, api_key=KEY, protect_metrics=protect_metrics, log_level="warning")
    async with serve(settings) as (_, client):
        for wrong in (None, KEY[:-1], KEY + "x", KEY.upper(), "k\u00e9y"):
            headers = {} if wrong is None else {"X-API-Key": wrong.encode()}  # bytes: non-ASCII goes through
            for path, kwargs in PROTECTED:
                assert_error(await client.post(path, headers=headers, **kwargs), 401, "unauthorized")
            metrics = await client.get("/metrics", headers=headers)
            assert metrics.status_code == (401 if protect_metrics else 200)
        for path in ("/health/live", "/health/ready"):
            assert (await client.get(path)).status_code == 200
        good = {"X-API-Key": KEY}
        for path, kwargs in PROTECTED:
            assert (await client.post(path, headers=good, **kwargs)).status_code == 200, path
        assert (await client.get("/metrics", headers=good)).status_code == 200


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
