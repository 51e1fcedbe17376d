"""A checkpoint loaded onto the GPU (`map_location="cuda"`) gives the CPU's outputs, also through the service's
torch backend in channels_last."""

from __future__ import annotations

import pytest
import torch

from devkit.checkpoints import make_checkpoint
from devkit.images import image_bytes
from models import PreprocessSpec, load_checkpoint, load_image_tensor
from models.backends import TorchBackend

pytestmark = pytest.mark.cuda

CASES = {
    "resnet20": {},  # the service tests' checkpoint: 32 px, small-input stem
    "resnet50": {"arch": "resnet50", "spec": PreprocessSpec(resize=73, crop=64)},  # bottlenecks, downsampling
}


@pytest.fixture(params=sorted(CASES))
def checkpoint_file(request, tmp_path):
    return make_checkpoint(tmp_path / "model.pt", seed=3, **CASES[request.param])


def batch_of_images(spec: PreprocessSpec, n: int = 4) -> torch.Tensor:
    return torch.stack([load_image_tensor(image_bytes("PNG", size=(70, 60), seed=i), spec) for i in range(n)])


def assert_same_logits(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal top-1, and logits within 1 % of their scale: cuDNN may use TF32 for convolutions (about 0.1 % with
    these random resnet50 logits of +-150, whose softmax is saturated, so scores alone would show nothing)."""
    assert torch.equal(got.argmax(1), want.argmax(1))
    torch.testing.assert_close(got, want, atol=1e-2 * want.abs().max().item(), rtol=0)


def test_checkpoint_loads_onto_the_gpu_and_gives_the_cpu_outputs(checkpoint_file):
    cpu = load_checkpoint(checkpoint_file)
    gpu = load_checkpoint(checkpoint_file, map_location="cuda")
    assert {p.device.type for p in gpu.model.parameters()} == {"cuda"}
    assert {b.device.type for b in gpu.model.buffers()} == {"cuda"}
    assert gpu.sha256 == cpu.sha256 and gpu.classes == cpu.classes
    x = batch_of_images(cpu.preprocess)
    with torch.inference_mode():
        want = cpu.model(x)
        got = gpu.model(x.cuda()).cpu()
    assert_same_logits(got, want)


def test_the_service_backend_on_cuda_uses_channels_last_and_agrees(checkpoint_file):
    device = torch.device("cuda", 0)
    ckpt = load_checkpoint(checkpoint_file)
    cpu = TorchBackend(ckpt, torch.device("cpu"))
    backend = TorchBackend(load_checkpoint(checkpoint_file, map_location=device), device)
    assert backend.device == "cuda:0" and backend.channels_last and not cpu.channels_last
    x = batch_of_images(ckpt.preprocess)
    got, want = backend.predict(x), cpu.predict(x)
    assert got.device.type == "cpu" and got.dtype == torch.float32
    assert_same_logits(got, want)
