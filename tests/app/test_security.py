"""API key (X-API-Key, when RESNET_API_KEY is set) and CORS (off unless RESNET_CORS_ORIGINS)."""

from __future__ import annotations

import pytest

from devkit.asgi import serve

pytestmark = pytest.mark.anyio
UNAUTHORIZED = {"error": {"code": "unauthorized",
                          "message": "missing or invalid API key (send it in the X-API-Key header)"}}


@pytest.fixture
async def keyed(settings_for):
    async with serve(settings_for(api_key="s3cret")) as (_, client):
        yield client


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/predict"), ("POST", "/v1/predict/batch"),
                                              ("POST", "/v1/feature-maps"), ("POST", "/v1/model/reload")])
@pytest.mark.parametrize("key", [None, "wrong", "s3cret "])
async def test_protected_endpoints_need_the_right_key(keyed, method, path, key):
    headers = {"X-API-Key": key} if key is not None else {}
    r = await keyed.request(method, path, headers=headers)
    assert r.status_code == 401
    assert r.json() == UNAUTHORIZED


async def test_the_right_key_passes(keyed, png):
    files = {"file": ("x.png", png, "image/png")}
    assert (await keyed.post("/v1/predict", headers={"X-API-Key": "s3cret"}, files=files)).status_code == 200
    assert (await keyed.post("/v1/model/reload", headers={"X-API-Key": "s3cret"})).status_code == 200


async def test_open_endpoints_stay_open(keyed):
    for path in ("/health/live", "/health/ready", "/v1/model", "/metrics", "/docs", "/openapi.json"):
        assert (await keyed.get(path)).status_code == 200, path


async def test_no_key_configured_means_no_check(client, png):
    r = await client.post("/v1/predict", files={"file": ("x.png", png, "image/png")})
    assert r.status_code == 200


async def test_cors_is_off_by_default(client):
    r = await client.options("/v1/predict", headers={"Origin": "http://example.com",
                                                     "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


async def test_cors_allows_the_configured_origins(settings_for):
    async with serve(settings_for(cors_origins=["http://ui.example"])) as (_, client):
        r = await client.options("/v1/predict", headers={"Origin": "http://ui.example",
                                                         "Access-Control-Request-Method": "POST"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://ui.example"
        r = await client.get("/health/live", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
