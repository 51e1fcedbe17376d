"""Pure-ASGI middleware: request id + access log + request metrics + catch-all 500, quiet startup failure."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_content
from app.core.errors import INTERNAL_ERROR
from app.core.logging import request_id_or_new, request_id_var
from app.core.metrics import ServiceMetrics

access_log = logging.getLogger("app.access")
log = logging.getLogger(__name__)


def _request_id(scope: Scope) -> str:
    return request_id_or_new(Headers(scope=scope).get("x-request-id"))


class RequestContextMiddleware:
    """Per request: honour or create X-Request-ID, count and time it, log one access line, never leak a traceback."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if state["started"]:
                raise
            state["status"] = INTERNAL_ERROR.status
            body = error_content(scope["path"], INTERNAL_ERROR.code, INTERNAL_ERROR.format())
            await JSONResponse(body, INTERNAL_ERROR.status, headers={"X-Request-ID": request_id})(scope, receive, send)
        finally:
            self._record(scope, state["status"], time.perf_counter() - start, request_id)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        endpoint = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(seconds)
        client = scope.get("client")
        access_log.info(
            "%s %s %d", scope["method"], scope["path"], status,
            extra={"request_id": request_id, "method": scope["method"], "path": scope["path"], "status": status,
                   "duration_ms": round(seconds * 1e3, 3), "client": client[0] if client else None},
        )


class QuietStartupFailureMiddleware:
    """When startup failed with the one line already logged, keep uvicorn from printing the traceback too."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_quietly(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and getattr(self.state, "startup_error", None):
                message = {"type": message["type"], "message": ""}
            await send(message)

        await self.app(scope, receive, send_quietly)
