"""The service with RESNET_BACKEND=onnxruntime answers like the torch backend (in-process app, real lifespan)."""

from __future__ import annotations

import asyncio
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from app.core.config import Settings
from app.main import create_app

SCORE_ATOL = 1e-4


def png(seed: int, size: tuple[int, int]) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    return buf.getvalue()


IMAGES = [png(seed, size) for seed, size in enumerate([(28, 28), (40, 32), (100, 60), (17, 23)])]


async def ask(settings: Settings) -> tuple[list[dict], dict, list[dict]]:
    """Predictions for every image (one by one, then as one /v1/predict/batch call) and /v1/model."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            single = []
            for data in IMAGES:
                r = await client.post("/v1/predict", files={"file": ("x.png", data, "image/png")},
                                      params={"top_k": 10})
                assert r.status_code == 200, r.text
                single.append(r.json())
            files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(IMAGES)]
            r = await client.post("/v1/predict/batch", files=files, params={"top_k": 10})
            assert r.status_code == 200, r.text
            info = (await client.get("/v1/model")).json()
    return single, info, r.json()["results"]


@pytest.fixture(scope="module")
def answers(resnet20_ckpt, resnet20_onnx):
    common = {"checkpoint": resnet20_ckpt.path, "device": "cpu", "torch_threads": 1, "decode_threads": 2,
              "max_batch_delay_ms": 2, "log_level": "warning"}
    torch_run = asyncio.run(ask(Settings(backend="torch", **common)))
    onnx_run = asyncio.run(ask(Settings(backend="onnxruntime", onnx_path=resnet20_onnx, **common)))
    export_run = asyncio.run(ask(Settings(backend="onnxruntime", **common)))  # exports at startup
    return torch_run, onnx_run, export_run


def scores(answer: dict) -> dict[int, float]:
    return {p["index"]: p["score"] for p in answer["predictions"]}


def test_onnxruntime_service_reports_its_backend(answers):
    _, (single, info, _), _ = answers
    assert info["backend"] == "onnxruntime"
    assert all(a["model"]["backend"] == "onnxruntime" for a in single)


@pytest.mark.parametrize("run", [1, 2], ids=["given-onnx-file", "exported-at-startup"])
def test_same_top1_and_scores_as_torch(answers, run):
    (torch_single, _, torch_batch), other = answers[0], answers[run]
    other_single, _, other_batch = other
    for expected, got in zip(torch_single + torch_batch, other_single + other_batch, strict=True):
        assert got["predictions"][0]["index"] == expected["predictions"][0]["index"]
        want, have = scores(expected), scores(got)
        assert want.keys() == have.keys()
        assert max(abs(want[i] - have[i]) for i in want) <= SCORE_ATOL
