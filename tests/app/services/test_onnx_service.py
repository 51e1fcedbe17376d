"""The service with RESNET_BACKEND=onnxruntime answers like the torch backend (in-process app, real lifespan).

Every endpoint is exercised with both backends; batching must behave the same (one forward pass for the
files of one /v1/predict/batch call) and scores must agree within SCORE_ATOL.
"""

from __future__ import annotations

import asyncio

import pytest

from app.core.config import Settings
from devkit.asgi import every_endpoint
from devkit.images import image_bytes

# Softmax scores of logits that agree within 1e-4 (tests/cli/test_export_onnx.py) agree closer still.
SCORE_ATOL = 1e-4


IMAGES = [image_bytes("PNG", size, seed) for seed, size in enumerate([(28, 28), (40, 32), (100, 60), (17, 23)])]


@pytest.fixture(scope="module")
def answers(resnet20_ckpt, resnet20_onnx):
    # A long batching delay: single requests must still not wait for it (nothing else is on the way), and the
    # four files of the batch call must share one forward pass.
    common = {"checkpoint": resnet20_ckpt.path, "device": "cpu", "torch_threads": 1, "decode_threads": 2,
              "max_batch_delay_ms": 5000, "log_level": "warning"}
    torch_run = asyncio.run(every_endpoint(IMAGES, Settings(backend="torch", **common)))
    onnx_run = asyncio.run(every_endpoint(IMAGES, Settings(backend="onnxruntime", onnx_path=resnet20_onnx,
                                                           **common)))
    export_run = asyncio.run(every_endpoint(IMAGES, Settings(backend="onnxruntime", **common)))  # exports at startup
    return torch_run, onnx_run, export_run


def scores(answer: dict) -> dict[int, float]:
    return {p["index"]: p["score"] for p in answer["predictions"]}


@pytest.mark.parametrize("run", [1, 2], ids=["given-onnx-file", "exported-at-startup"])
def test_onnxruntime_service_reports_its_backend(answers, run):
    got = answers[run]
    assert got["info"]["backend"] == "onnxruntime"
    assert all(a["model"]["backend"] == "onnxruntime" for a in got["single"])
    assert 'backend="onnxruntime"' in got["metrics"]


@pytest.mark.parametrize("run", [1, 2], ids=["given-onnx-file", "exported-at-startup"])
def test_same_top1_and_scores_as_torch(answers, run):
    expected_run, got_run = answers[0], answers[run]
    for expected, got in zip(expected_run["single"] + expected_run["batch"], got_run["single"] + got_run["batch"],
                             strict=True):
        assert got["predictions"][0]["index"] == expected["predictions"][0]["index"]
        want, have = scores(expected), scores(got)
        assert want.keys() == have.keys()
        assert max(abs(want[i] - have[i]) for i in want) <= SCORE_ATOL


@pytest.mark.parametrize("run", [0, 1, 2], ids=["torch", "given-onnx-file", "exported-at-startup"])
def test_every_endpoint_answers_the_same_way(answers, run):
    got, reference = answers[run], answers[0]
    assert got["ready"] == 200
    assert got["batch_passes"] == 1  # the four files of one batch call: one forward pass
    assert got["feature_maps"] == (200, "image/png", "16x28x28")  # feature maps stay on the torch path
    info = {k: v for k, v in got["info"].items() if k not in ("backend", "loaded_at")}
    assert info == {k: v for k, v in reference["info"].items() if k not in ("backend", "loaded_at")}


def test_reload_with_an_onnx_file_exports_the_new_checkpoint(resnet20_ckpt, resnet20_onnx, checkpoint_factory,
                                                             tmp_path):
    """RESNET_ONNX_PATH belongs to RESNET_CHECKPOINT; reloading another checkpoint exports that one instead."""
    other = checkpoint_factory(tmp_path / "other.pt", "resnet20", resnet20_ckpt.preprocess, 10, seed=7)
    settings = Settings(checkpoint=resnet20_ckpt.path, backend="onnxruntime", onnx_path=resnet20_onnx, device="cpu",
                        torch_threads=1, log_level="warning", api_key="k", model_dir=tmp_path.parent)
    got = asyncio.run(every_endpoint(IMAGES, settings, reload_to=str(other.path)))
    assert got["reloaded"]["checkpoint_sha256"] == other.sha256 and got["reloaded"]["backend"] == "onnxruntime"
    assert got["after_reload"]["model"]["checkpoint_sha256"] == other.sha256
