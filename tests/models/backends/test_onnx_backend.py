"""`OnnxRuntimeBackend`: the InferenceBackend protocol on ONNX Runtime, guarded by the checkpoint's sha256."""

from __future__ import annotations

import pytest
import torch

from models import CheckpointError
from models.backends import open_backend

ATOL = 1e-4


def test_backend_exports_at_startup_when_no_file_is_given(resnet18_ckpt):
    backend = open_backend(resnet18_ckpt, runtime="onnxruntime", artifact=None, threads=1, device="cpu")
    assert (backend.name, backend.device, backend.onnx_path) == ("onnxruntime", "cpu", None)
    x = torch.randn(3, 3, 64, 64)
    logits = backend.predict(x)
    with torch.inference_mode():
        expected = resnet18_ckpt.model(x)
    assert logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert logits.shape == (3, 7)
    assert (logits - expected).abs().max().item() <= ATOL


def test_backend_loads_an_exported_file(resnet20_ckpt, resnet20_onnx):
    backend = open_backend(resnet20_ckpt, runtime="onnxruntime", artifact=resnet20_onnx, threads=2, device="cpu")
    assert backend.onnx_path == str(resnet20_onnx)
    assert backend.metadata["classes"] == resnet20_ckpt.classes
    for n in (1, 5):
        x = torch.randn(n, 1, 28, 28)
        with torch.inference_mode():
            expected = resnet20_ckpt.model(x)
        assert (backend.predict(x) - expected).abs().max().item() <= ATOL


def test_channels_last_and_non_contiguous_batches_are_accepted(resnet20_ckpt, resnet20_onnx):
    backend = open_backend(resnet20_ckpt, runtime="onnxruntime", artifact=str(resnet20_onnx), threads=1, device="cpu")
    x = torch.randn(4, 1, 28, 28)
    plain = backend.predict(x)
    assert torch.allclose(backend.predict(x.contiguous(memory_format=torch.channels_last)), plain)
    assert torch.allclose(backend.predict(torch.randn(8, 1, 28, 28)[::2].copy_(x)), plain)


def test_onnx_from_another_checkpoint_is_refused(resnet20_ckpt, resnet20_onnx, checkpoint_factory, tmp_path):
    other = checkpoint_factory(tmp_path / "other.pt", "resnet20", resnet20_ckpt.preprocess, 10, seed=5)
    with pytest.raises(CheckpointError, match="exported from checkpoint sha256"):
        open_backend(other, runtime="onnxruntime", artifact=str(resnet20_onnx), threads=1, device="cpu")


def test_missing_and_corrupt_onnx_files_are_checkpoint_errors(resnet20_ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        open_backend(resnet20_ckpt, runtime="onnxruntime", artifact=tmp_path / "nope.onnx", threads=1,
                     device="cpu")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        open_backend(resnet20_ckpt, runtime="onnxruntime", artifact=str(bad), threads=1, device="cpu")


def test_cuda_request_without_cuda_runs_on_the_cpu(resnet20_ckpt, resnet20_onnx):
    backend = open_backend(resnet20_ckpt, runtime="onnxruntime", artifact=resnet20_onnx, threads=1,
                           device=torch.device("cuda", 0))  # resolved, as the service resolves RESNET_DEVICE
    assert backend.device == "cpu"
    assert backend.predict(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
