"""Fixtures for the service tests: in-process apps, a slow model on demand and a real server.

The checkpoints, images and server processes they use are built by devkit/; the shared `checkpoint`
fixture is in tests/conftest.py.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import torch

import app.services.model_manager as model_manager_module
from app.core.config import Settings
from devkit.asgi import serve
from devkit.checkpoints import make_checkpoint
from devkit.images import image_bytes
from devkit.server import Server, start_server
from models.backends.torch_backend import TorchBackend


@pytest.fixture(scope="session")
def other_checkpoint(tmp_path_factory) -> Path:
    """A second valid checkpoint (four classes, other weights) for reload tests."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt2") / "model.pt", ["a", "b", "c", "d"], seed=1)


@pytest.fixture
def png() -> bytes:
    return image_bytes("PNG")


RELOAD_KEY = "reload-key"


@pytest.fixture
def settings_for(checkpoint, tmp_path_factory) -> Callable[..., Settings]:
    """Test settings: CPU, torch backend, few threads; keyword arguments override. Reloads may load any file the
    tests made (RESNET_MODEL_DIR is pytest's temp root); they still need an API key (see `reload_client`)."""

    def make(**overrides) -> Settings:
        base = {"checkpoint": checkpoint, "device": "cpu", "backend": "torch", "torch_threads": 1,
                "decode_threads": 2, "max_batch_delay_ms": 2, "log_level": "warning",
                "model_dir": tmp_path_factory.getbasetemp()}
        return Settings(**{**base, **overrides})

    return make


@pytest.fixture
def serve_app():
    return serve


@pytest.fixture
async def client(settings_for) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(settings_for()) as (_, c):
        yield c


class GatedBackend(TorchBackend):
    """A torch backend whose forward passes block on `release` once `armed`: a slow model on demand."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        if self.armed:
            self.entered.set()
            self.release.wait(30)
        return super().predict(batch)


@pytest.fixture
def gated(monkeypatch) -> list[GatedBackend]:
    """Every backend the service builds is a GatedBackend; the list holds them in build order."""
    built: list[GatedBackend] = []

    def build(settings, checkpoint, device):
        backend = GatedBackend(checkpoint, device, channels_last=False)
        built.append(backend)
        return backend

    monkeypatch.setattr(model_manager_module, "open_configured_backend", build)
    yield built
    for backend in built:
        backend.release.set()


# --- a real server in a subprocess -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def server(checkpoint, tmp_path_factory) -> Iterator[Server]:
    """One `resnet-serve` process shared by the integration tests (batches wait up to 50 ms)."""
    srv = start_server(tmp_path_factory.mktemp("server"), checkpoint=checkpoint, max_batch_delay_ms=50)
    try:
        srv.wait_ready()
        yield srv
    finally:
        code = srv.stop()
    assert code in (0, -signal.SIGTERM), srv.output()  # uvicorn re-raises SIGTERM after a clean shutdown
    assert '"message": "stopped"' in srv.output()


@pytest.fixture
async def reload_client(settings_for) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a service with an API key (HTTP reload is on only then); it sends the key."""
    async with serve(settings_for(api_key=RELOAD_KEY), {"X-API-Key": RELOAD_KEY}) as (_, c):
        yield c
