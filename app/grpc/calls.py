"""What every RPC shares with an HTTP request: a request id, the API key, metrics, the access log, and errors
answered as gRPC status codes (app/grpc/status.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from app.core.admission import Admission
from app.core.config import Settings
from app.core.logging import request_id_or_new, request_id_var
from app.core.metrics import ServiceMetrics
from app.core.security import check_api_key
from app.grpc.status import GrpcError, grpc_error

T = TypeVar("T")
access_log = logging.getLogger("app.access")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shared:
    """The parts of the app the RPCs share with HTTP (built by `create_app` and the lifespan)."""

    settings: Settings
    admission: Admission
    metrics: ServiceMetrics


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode(errors="replace")
    return None


async def run_call(shared: Shared, method: str, context: grpc.aio.ServicerContext,
                   work: Callable[[], Awaitable[T]], *, needs_key: bool = False) -> T:
    """Run one RPC: echo or create x-request-id, check x-api-key when `needs_key`, record metrics and the access
    log as HTTP does (route `grpc:<method>`), and answer a failure with its status code and message."""
    request_id = request_id_or_new(_metadata(context, "x-request-id"))
    token = request_id_var.set(request_id)
    start, code = time.perf_counter(), grpc.StatusCode.OK
    await context.send_initial_metadata((("x-request-id", request_id),))
    try:
        if needs_key:
            check_api_key(shared.settings, _metadata(context, "x-api-key"))
        return await work()
    except asyncio.CancelledError:  # the client went away, or its deadline passed (it sees DEADLINE_EXCEEDED)
        remaining = context.time_remaining()
        code = grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else \
            grpc.StatusCode.CANCELLED
        raise
    except Exception as exc:
        if not isinstance(exc, grpc.aio.AbortError):
            error = _failure(exc, method)
            code = error.code
            context.set_trailing_metadata(error.trailers)
            await context.abort(error.code, error.message)
        raise
    finally:
        _record(shared.metrics, method, code, time.perf_counter() - start, request_id, context.peer())
        request_id_var.reset(token)


def _failure(exc: Exception, method: str) -> GrpcError:
    error = grpc_error(exc)
    if error.code == grpc.StatusCode.INTERNAL:
        log.error("unhandled error in gRPC %s", method, exc_info=exc)
    return error


def _record(metrics: ServiceMetrics, method: str, code: grpc.StatusCode, seconds: float, request_id: str,
            peer: str | None) -> None:
    route = f"grpc:{method}"
    metrics.requests.labels(route, "GRPC", code.name).inc()
    metrics.latency.labels(route).observe(seconds)
    access_log.info("GRPC %s %s", method, code.name,
                    extra={"request_id": request_id, "method": "GRPC", "path": route, "status": code.name,
                           "duration_ms": round(seconds * 1e3, 3), "client": peer})
