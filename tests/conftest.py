"""Shared test setup: tests run on the CPU, with few threads, whatever machine they are on.

Builders shared by several folders (and by bench/) live in tests/helpers/; fixtures stay in conftest.py files.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("RESNET_GRPC_PORT", "0")  # apps built in tests serve no gRPC unless a test asks (8001 is shared)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """The tiny service checkpoint (helpers.checkpoints defaults: a 3-class RGB resnet20 on 32 px crops), shared by
    the service tests in tests/api/ and the backend tests in tests/backends/."""
    from helpers.checkpoints import make_checkpoint  # imports torch: only once the variables above are set

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture
def anyio_backend() -> str:
    """`@pytest.mark.anyio` tests run on asyncio."""
    return "asyncio"
