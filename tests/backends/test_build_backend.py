"""build_backend: torch by name, onnxruntime by name or by `auto` on the CPU, clear failures otherwise."""

from __future__ import annotations

import app.backends as backends
import pytest
import torch
from app.backends import TorchBackend, build_backend

from app.core.config import Settings
from app.core.errors import ServiceConfigError
from models import CheckpointError, load_checkpoint
from models.backends.base import InferenceBackend

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ckpt(checkpoint):
    return load_checkpoint(checkpoint)


def test_torch_backend_follows_the_protocol(ckpt):
    backend = build_backend(Settings(backend="torch"), ckpt, CPU)
    assert isinstance(backend, TorchBackend) and isinstance(backend, InferenceBackend)
    assert (backend.name, backend.device) == ("torch", "cpu")
    x = torch.randn(2, 3, 32, 32)
    out = backend.predict(x)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (2, 3)
    with torch.inference_mode():
        assert torch.allclose(out, ckpt.model(x), atol=1e-6)


def test_channels_last_gives_the_same_logits(ckpt):
    x = torch.randn(2, 3, 32, 32)
    plain = TorchBackend(ckpt, CPU, channels_last=False).predict(x)
    cl = TorchBackend(ckpt, CPU, channels_last=True).predict(x)
    assert torch.allclose(plain, cl, atol=1e-5)


def test_auto_falls_back_to_torch_without_onnx(ckpt, monkeypatch):
    monkeypatch.setattr(backends, "onnx_backend_available", lambda: False)
    assert build_backend(Settings(backend="auto"), ckpt, CPU).name == "torch"


def test_explicit_onnxruntime_without_onnx_fails_clearly(ckpt, monkeypatch):
    monkeypatch.setattr(backends, "onnx_backend_available", lambda: False)
    with pytest.raises(ServiceConfigError, match="RESNET_BACKEND=onnxruntime needs the onnxruntime package"):
        build_backend(Settings(backend="onnxruntime"), ckpt, CPU)


def test_auto_picks_onnxruntime_on_the_cpu_when_available(ckpt):
    if not backends.onnx_backend_available():
        pytest.fail("onnxruntime and models/backends/onnx_backend.py are both part of this project")
    backend = build_backend(Settings(backend="auto", torch_threads=1), ckpt, CPU)
    assert backend.name == "onnxruntime"
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(backend.predict(x), ckpt.model(x), atol=1e-4)


def test_auto_falls_back_when_onnxruntime_fails_to_export(ckpt, monkeypatch):
    def broken(runtime):
        raise ServiceConfigError(f"{runtime} backend failed to start: RuntimeError: export failed")

    monkeypatch.setattr(backends, "onnx_runtime_class", broken)
    assert build_backend(Settings(backend="auto"), ckpt, CPU).name == "torch"


@pytest.mark.parametrize("backend", ["auto", "onnxruntime", "openvino"])
def test_a_given_artifact_that_cannot_run_is_refused_never_replaced(backend, ckpt, tmp_path):
    stale = tmp_path / "other.onnx"
    stale.write_bytes(b"not onnx")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        build_backend(Settings(backend=backend, onnx_path=stale), ckpt, CPU)
