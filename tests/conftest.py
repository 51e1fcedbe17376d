"""Shared test setup: tests run on the CPU, with few threads, whatever machine they are on.

The tests mirror the product's folders (tests/app, tests/cli, tests/models, tests/training) plus tests/deploy and
tests/cuda. Builders shared with bench/ live in devkit/ (the one kit, imported as `devkit.*`); fixtures stay in
conftest.py files.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("RESNET_GRPC_PORT", "0")  # apps built in tests serve no gRPC unless a test asks (8001 is shared)

# torch is imported only once the variables above are set.
from devkit.checkpoints import class_names, fashion_mnist_spec, make_checkpoint
from models import Checkpoint, PreprocessSpec, load_checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """The tiny service checkpoint (devkit.checkpoints defaults: a 3-class RGB resnet20 on 32 px crops), shared by
    the service, backend and command tests."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture
def anyio_backend() -> str:
    """`@pytest.mark.anyio` tests run on asyncio."""
    return "asyncio"


# Tiny checkpoints for the backend, export and service tests: a Fashion-MNIST-shaped resnet20 and a
# torchvision-shaped resnet18 (built by devkit/checkpoints.py).

def loaded_checkpoint(path: Path, arch: str, spec: PreprocessSpec, num_classes: int, seed: int = 0,
                      **kwargs: object) -> Checkpoint:
    """A random `arch` with `num_classes` classes (class_0, class_1, ...) saved at `path`, loaded back."""
    return load_checkpoint(make_checkpoint(path, class_names(num_classes), arch=arch, spec=spec, seed=seed, **kwargs))


@pytest.fixture(scope="session")
def checkpoint_factory():
    """`loaded_checkpoint` for tests that need one of their own (another seed, another class list)."""
    return loaded_checkpoint


@pytest.fixture(scope="session")
def resnet20_ckpt(tmp_path_factory):
    return loaded_checkpoint(tmp_path_factory.mktemp("r20") / "model.pt", "resnet20", fashion_mnist_spec(), 10)


@pytest.fixture(scope="session")
def resnet18_ckpt(tmp_path_factory):
    spec = PreprocessSpec(resize=72, crop=64)
    return loaded_checkpoint(tmp_path_factory.mktemp("r18") / "model.pt", "resnet18", spec, 7, seed=1)


@pytest.fixture(scope="session")
def resnet20_onnx(resnet20_ckpt, tmp_path_factory):
    from models.onnx_export import export_onnx

    return export_onnx(resnet20_ckpt, tmp_path_factory.mktemp("r20onnx") / "model.onnx")


@pytest.fixture(scope="session")
def resnet18_onnx(resnet18_ckpt, tmp_path_factory):
    from models.onnx_export import export_onnx

    return export_onnx(resnet18_ckpt, tmp_path_factory.mktemp("r18onnx") / "model.onnx")
