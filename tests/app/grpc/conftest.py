"""Fixtures of the gRPC tests: a real `resnet-serve` with gRPC on free loopback ports, and in-process apps.

No `__init__.py` up to tests/: a package named `app` under tests/ would shadow the product's `app`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.config import Settings
from devkit.server import Server, free_port, start_server


@dataclass
class GrpcServer:
    http: Server
    grpc_url: str  # host:port, as tritonclient.grpc takes it


def start_grpc_server(tmp: Path, **settings: object) -> GrpcServer:
    port = free_port()
    srv = start_server(tmp, grpc_port=port, **settings)
    srv.wait_ready()
    return GrpcServer(srv, f"127.0.0.1:{port}")


@pytest.fixture(scope="session")
def grpc_server(checkpoint, tmp_path_factory) -> Iterator[GrpcServer]:
    """One `resnet-serve` with HTTP and gRPC shared by the client tests (batches wait up to 50 ms)."""
    srv = start_grpc_server(tmp_path_factory.mktemp("grpc-server"), checkpoint=checkpoint, max_batch_delay_ms=50)
    try:
        yield srv
    finally:
        code = srv.http.stop()
    assert code in (0, -signal.SIGTERM), srv.http.output()
    assert '"message": "gRPC stopped"' in srv.http.output()


@pytest.fixture
def grpc_settings(checkpoint) -> Callable[..., Settings]:
    """Settings of an in-process app with gRPC on a free port; keyword arguments override."""

    def make(**overrides: object) -> Settings:
        base = {"checkpoint": checkpoint, "device": "cpu", "backend": "torch", "torch_threads": 1,
                "decode_threads": 2, "max_batch_delay_ms": 2, "log_level": "warning", "grpc_port": free_port(),
                "host": "127.0.0.1"}  # explicit: a test elsewhere leaves RESNET_HOST set in the environment
        return Settings(**{**base, **overrides})

    return make
