"""Reload is safe by default: off without an API key, and confined to RESNET_MODEL_DIR with one neutral answer."""

from __future__ import annotations

import shutil

import pytest

from devkit.asgi import serve
from devkit.checkpoints import make_checkpoint

pytestmark = pytest.mark.anyio


async def test_http_reload_is_off_without_an_api_key(settings_for, other_checkpoint):
    async with serve(settings_for()) as (_, client):
        r = await client.post("/v1/model/reload", json={"checkpoint": str(other_checkpoint)})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "reload_disabled"
        assert "RESNET_API_KEY" in r.json()["error"]["message"] and "SIGHUP" in r.json()["error"]["message"]
        r = await client.post("/v1/model/reload")
        assert r.status_code == 403


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "models"
    make_checkpoint(folder / "model.pt")
    make_checkpoint(folder / "v2" / "model.pt", ["a", "b", "c", "d"], seed=1)
    make_checkpoint(tmp_path / "elsewhere" / "model.pt", seed=2)
    (folder / "link.pt").symlink_to(tmp_path / "elsewhere" / "model.pt")
    return folder


async def test_only_files_inside_the_model_folder_load(settings_for, model_dir):
    settings = settings_for(api_key="k", checkpoint=model_dir / "model.pt", model_dir=None)  # default: its folder
    async with serve(settings, {"X-API-Key": "k"}) as (_, client):
        outside = [str(model_dir.parent / "elsewhere" / "model.pt"), "/etc/passwd", "/etc/no-such-file",
                   "../elsewhere/model.pt", "v2/../../elsewhere/model.pt", "link.pt", str(model_dir / "link.pt")]
        bodies = set()
        for path in outside:
            r = await client.post("/v1/model/reload", json={"checkpoint": path})
            assert r.status_code == 403, (path, r.text)
            bodies.add(r.text)
        assert len(bodies) == 1  # the same answer whether the file exists, is readable or not: no oracle
        assert "passwd" not in bodies.pop()
        r = await client.post("/v1/model/reload", json={"checkpoint": "model.pt",
                                                         "class_index": "/etc/passwd"})
        assert r.status_code == 403
        r = await client.post("/v1/model/reload", json={"checkpoint": "v2/model.pt"})  # relative: inside the folder
        assert r.status_code == 200 and r.json()["model"]["classes"] == ["a", "b", "c", "d"]
        r = await client.post("/v1/model/reload", json={"checkpoint": str(model_dir / "model.pt")})
        assert r.status_code == 200


async def test_model_dir_setting_moves_the_fence(settings_for, model_dir):
    shutil.copytree(model_dir / "v2", model_dir.parent / "elsewhere" / "v2")
    settings = settings_for(api_key="k", checkpoint=model_dir / "model.pt", model_dir=model_dir.parent / "elsewhere")
    async with serve(settings, {"X-API-Key": "k"}) as (_, client):
        assert (await client.post("/v1/model/reload", json={"checkpoint": "v2/model.pt"})).status_code == 200
        r = await client.post("/v1/model/reload", json={"checkpoint": str(model_dir / "model.pt")})
        assert r.status_code == 403  # the configured checkpoint's folder is no longer inside the fence


async def test_reload_bodies_with_unknown_fields_are_refused(settings_for):
    async with serve(settings_for(api_key="k"), {"X-API-Key": "k"}) as (_, client):
        r = await client.post("/v1/model/reload", json={"checkpoint": None, "path": "/etc/passwd"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["ReloadRequest"]
        assert schema["additionalProperties"] is False
