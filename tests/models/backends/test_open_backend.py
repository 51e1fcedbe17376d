"""open_backend: torch by name, onnxruntime by name or by `auto` on the CPU, clear failures otherwise; `auto`
resolves in one place (resolve_runtime) for every caller."""

from __future__ import annotations

import pytest
import torch

import models.backends as backends
from models import CheckpointError, load_checkpoint
from models.backends import InferenceBackend, TorchBackend, open_backend, resolve_runtime
from models.errors import RuntimeUnavailableError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ckpt(checkpoint):
    return load_checkpoint(checkpoint)


def test_torch_backend_follows_the_protocol(ckpt):
    backend = open_backend(ckpt, device=CPU, runtime="torch")
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


def _without(monkeypatch, *missing: str) -> None:
    real = backends.runtime_available
    monkeypatch.setattr(backends, "runtime_available", lambda r: r not in missing and real(r))


def test_auto_falls_back_to_torch_without_onnx(ckpt, monkeypatch):
    _without(monkeypatch, "onnxruntime")
    assert open_backend(ckpt, device=CPU).name == "torch"


def test_explicit_onnxruntime_without_onnx_fails_clearly(ckpt, monkeypatch):
    _without(monkeypatch, "onnxruntime")
    needs = r"onnxruntime runtime needs pip install 'resnet-service\[onnx\]'"
    with pytest.raises(RuntimeUnavailableError, match=needs):
        open_backend(ckpt, device=CPU, runtime="onnxruntime")


def test_auto_picks_onnxruntime_on_the_cpu_when_available(ckpt):
    backend = open_backend(ckpt, device=CPU, threads=1)
    assert backend.name == "onnxruntime"
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(backend.predict(x), ckpt.model(x), atol=1e-4)


def test_auto_falls_back_when_onnxruntime_fails_to_export(ckpt, monkeypatch):
    def broken(runtime):
        raise RuntimeUnavailableError(f"{runtime} failed to start: RuntimeError: export failed")

    monkeypatch.setattr(backends, "_runtime_class", broken)
    assert open_backend(ckpt, device=CPU).name == "torch"


@pytest.mark.parametrize("runtime", ["auto", "onnxruntime", "openvino"])
def test_a_given_artifact_that_cannot_run_is_refused_never_replaced(runtime, ckpt, tmp_path):
    stale = tmp_path / "other.onnx"
    stale.write_bytes(b"not onnx")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        open_backend(ckpt, artifact=stale, device=CPU, runtime=runtime)


def test_the_torch_runtime_refuses_an_artifact(ckpt, tmp_path):
    with pytest.raises(RuntimeUnavailableError, match="the torch runtime runs a checkpoint, not an ONNX file"):
        open_backend(ckpt, artifact=tmp_path / "model.onnx", device=CPU, runtime="torch")


@pytest.mark.parametrize(("device", "precision", "openvino", "expected"), [
    ("cpu", None, True, "onnxruntime"),  # a checkpoint on the CPU: ONNX Runtime, even with OpenVINO installed
    ("cpu", "fp32", True, "onnxruntime"),
    ("cpu", "int8", True, "openvino"),  # measured faster there (docs/BENCHMARKS.md section 7)
    ("cpu", "int8", False, "onnxruntime"),
    ("cpu", "bf16", True, "openvino"),
    ("cpu", "bf16", False, "openvino"),  # the only runtime for bf16: opening it says what to install
    ("cuda", None, True, "torch"),
    ("cuda", "int8", True, "openvino"),  # a given artifact is run as given, never swapped for torch
])
def test_auto_resolves_by_device_and_precision(device, precision, openvino, expected, monkeypatch):
    if not openvino:
        _without(monkeypatch, "openvino")
    assert resolve_runtime("auto", torch.device(device), precision) == expected


@pytest.mark.parametrize("name", ["torch", "onnxruntime", "openvino"])
def test_a_named_runtime_is_taken_as_named(name):
    assert resolve_runtime(name, CPU, "int8") == name
