"""The grpc.aio server's lifecycle inside the app's lifespan: same process and event loop as HTTP.

It binds RESNET_GRPC_PORT (0 or empty: no gRPC) on RESNET_HOST. With `resnet-serve --workers N` every worker
binds the same port (SO_REUSEPORT, as the kernel spreads the connections); a single worker binds it alone, so a
port already in use stops startup with one line. The standard health service (grpc.health.v1) says SERVING
once the model is loaded, NOT_SERVING from shutdown on; shutdown drains running calls for up to the grace period.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from tritonclient.grpc import service_pb2_grpc

from app.core.config import Settings
from app.core.errors import StartupError
from app.grpc.calls import Shared
from app.grpc.servicer import InferenceServicer

log = logging.getLogger("app.startup")
SERVICE_NAME = "inference.GRPCInferenceService"
_MAX_MESSAGE = 2**31 - 1  # grpc's own ceiling
_ENVELOPE = 1 << 20  # the request's names, shapes and parameters beside the tensor bytes


def max_message_bytes(settings: Settings) -> int:
    """RESNET_GRPC_MAX_MESSAGE_BYTES, or by default room for RESNET_MAX_BATCH_FILES uploads of the largest size."""
    size = settings.grpc_max_message_bytes or settings.max_upload_bytes * settings.max_batch_files + _ENVELOPE
    return min(size, _MAX_MESSAGE)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    """The running server and its health service; every method is a no-op when gRPC is off."""

    def __init__(self, server: grpc.aio.Server | None = None,
                 health: health_aio.HealthServicer | None = None) -> None:
        self.server = server
        self.health = health

    async def serving(self) -> None:
        """Health: SERVING (the model is loaded and warmed up)."""
        if self.health is not None:
            for name in ("", SERVICE_NAME):
                await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        """NOT_SERVING, refuse new calls, let running ones finish for up to `grace` seconds."""
        if self.server is None or self.health is None:
            return
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        log.info("gRPC stopped")


async def start_grpc(state: Any) -> GrpcServer:
    """Start gRPC for the app whose `state` holds settings, admission, metrics, oip_stats and (later) service."""
    settings: Settings = state.settings
    if not settings.grpc_port:
        return GrpcServer()
    limit = max_message_bytes(settings)
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
               ("grpc.so_reuseport", 1 if settings.workers > 1 else 0)]
    server = grpc.aio.server(options=options)
    shared = Shared(settings, state.admission, state.metrics)
    servicer = InferenceServicer(shared, lambda: state.service, state.oip_stats)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    health = health_aio.HealthServicer()
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    address = _address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(address)
    except RuntimeError as e:
        raise StartupError(f"cannot listen for gRPC on {address} (RESNET_GRPC_PORT): {e}") from None
    await server.start()
    log.info("gRPC on %s, messages up to %d bytes", address, limit)
    return GrpcServer(server, health)
