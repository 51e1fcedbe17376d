"""GET /docs and /openapi.json: local Swagger UI assets, an OpenAPI 3.0 schema that documents every error."""

from __future__ import annotations

import pytest

from app.api.uploads import IMAGE_TYPES

pytestmark = pytest.mark.anyio


async def test_docs_page_uses_only_local_assets(client):
    r = await client.get("/docs")
    assert r.status_code == 200
    html = r.text
    assert "/static/swagger-ui/swagger-ui-bundle.js" in html
    assert "/static/swagger-ui/swagger-ui.css" in html
    assert "http://" not in html and "https://" not in html
    assert '"validatorUrl": null' in html


@pytest.mark.parametrize("asset", ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"])
async def test_assets_are_served(client, asset):
    r = await client.get(f"/static/swagger-ui/{asset}")
    assert r.status_code == 200 and len(r.content) > 100


async def test_redoc_is_not_served(client):
    assert (await client.get("/redoc")).status_code == 404


async def test_openapi_is_3_0_with_file_uploads_as_binary(client):
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"] == "3.0.3"
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    for media_type in ("image/jpeg", "image/png", "image/webp", "image/gif"):  # raw bodies of the types it names
        assert body[media_type]["schema"] == {"type": "string", "format": "binary", "minLength": 1}
    assert body["multipart/form-data"]["encoding"]["file"]["contentType"] == ", ".join(IMAGE_TYPES)
    batch = spec["paths"]["/v1/predict/batch"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert batch["schema"]["properties"]["files"]["items"] == {"type": "string", "format": "binary"}  # may be empty
    assert "contentMediaType" not in str(spec) and "'type': 'null'" not in str(spec)


@pytest.mark.parametrize(("path", "method", "statuses"), [
    ("/v1/predict", "post", {"400", "401", "413", "415", "422", "503", "504"}),
    ("/v1/predict/batch", "post", {"401", "413", "415", "422", "503", "504"}),
    ("/v1/feature-maps", "post", {"400", "401", "413", "415", "422", "503", "504"}),
    ("/v1/model/reload", "post", {"401", "403", "422", "503"}),
    ("/v1/model", "get", {"503"}),
    ("/health/ready", "get", {"503"}),
    ("/metrics", "get", {"401"}),
])
async def test_every_error_status_is_documented_with_the_error_model(client, path, method, statuses):
    spec = (await client.get("/openapi.json")).json()
    responses = spec["paths"][path][method]["responses"]
    assert statuses <= set(responses)
    for status in statuses:
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}


async def test_top_k_clamping_is_documented(client):
    spec = (await client.get("/openapi.json")).json()
    params = {p["name"]: p for p in spec["paths"]["/v1/predict"]["post"]["parameters"]}
    assert "clamped" in params["top_k"]["description"]
    assert params["top_k"]["schema"]["minimum"] == 1
