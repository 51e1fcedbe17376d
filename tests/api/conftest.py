"""Fixtures for the service tests: tiny checkpoints, generated images, in-process apps and a real server."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image

import app.services.model_manager as model_manager_module
from app.backends.torch_backend import TorchBackend
from app.core.config import Settings
from app.main import create_app
from models import PreprocessSpec, create_model, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["cat", "dog", "bird"]
SPEC = PreprocessSpec(resize=36, crop=32)


def make_checkpoint(path: Path, classes: list[str] = CLASSES, seed: int = 0, spec: PreprocessSpec = SPEC) -> Path:
    """A resnet20 with random weights and BatchNorm statistics (so different images give different scores)."""
    torch.manual_seed(seed)
    kwargs = {"num_classes": len(classes), "in_channels": spec.channels}
    model = create_model("resnet20", **kwargs)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(path, model.eval(), arch="resnet20", arch_kwargs=kwargs, classes=classes, preprocess=spec,
                           metrics={"val_top1": 0.5, "epoch": 3})


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (48, 40), seed: int = 0, mode: str = "RGB") -> bytes:
    """A noisy image made here, in any Pillow format."""
    g = torch.Generator().manual_seed(seed)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    arr = torch.randint(0, 256, (size[1], size[0], channels), generator=g, dtype=torch.uint8).numpy()
    img = Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture(scope="session")
def other_checkpoint(tmp_path_factory) -> Path:
    """A second valid checkpoint (four classes, other weights) for reload tests."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt2") / "model.pt", ["a", "b", "c", "d"], seed=1)


@pytest.fixture
def png() -> bytes:
    return image_bytes("PNG")


@pytest.fixture
def settings_for(checkpoint) -> Callable[..., Settings]:
    """Test settings: CPU, torch backend, few threads; keyword arguments override."""

    def make(**overrides) -> Settings:
        base = {"checkpoint": checkpoint, "device": "cpu", "backend": "torch", "torch_threads": 1,
                "decode_threads": 2, "max_batch_delay_ms": 2, "log_level": "warning"}
        return Settings(**{**base, **overrides})

    return make


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    """The app with its lifespan running, and an httpx client talking to it in-process."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield application, client


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

    monkeypatch.setattr(model_manager_module, "build_backend", build)
    yield built
    for backend in built:
        backend.release.set()


# --- a real server in a subprocess -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESNET_")}
    env.update({"PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "RESNET_DEVICE": "cpu", "RESNET_BACKEND": "torch",
                "RESNET_TORCH_THREADS": "1", "RESNET_DECODE_THREADS": "2", "RESNET_LOG_LEVEL": "info"})
    env.update({f"RESNET_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class Server:
    """A service process on a loopback port; `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def start_server(tmp: Path, module: str = "cli", **settings: object) -> Server:
    """`resnet-serve` (module="cli") or `uvicorn app.main:app` (module="uvicorn") with the given settings."""
    port = free_port()
    if module == "cli":
        args = [sys.executable, "-m", "app.cli", "--host", "127.0.0.1", "--port", str(port)]
    else:
        args = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    return Server(args, server_env(**settings), port, tmp / f"server-{port}.log")


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
