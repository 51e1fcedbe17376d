"""Request body limits, enforced before a handler reads anything.

A body over its route's limit is refused with 413 at once from Content-Length, or as soon as the bytes received
pass the limit (chunked bodies), so it is never held whole: multipart files included, which the form parser would
otherwise spool to disk before any per-file check ran.
"""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import Settings
from app.core.errors import PAYLOAD_TOO_LARGE, UploadTooLargeError, error_body

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the file bytes
SMALL_BODY_LIMIT = 64 * 1024  # every other route takes at most a small JSON body (model reload)
SINGLE_IMAGE_ROUTES = frozenset({"/v1/predict", "/v1/feature-maps"})
BATCH_ROUTE = "/v1/predict/batch"


def body_limit(settings: Settings, path: str, multipart: bool) -> tuple[int, int]:
    """(bytes allowed in the body, limit named in the 413 message) for a request to `path`."""
    if path in SINGLE_IMAGE_ROUTES:
        return settings.max_upload_bytes + (MULTIPART_OVERHEAD if multipart else 0), settings.max_upload_bytes
    if path == BATCH_ROUTE:
        allowed = settings.max_batch_files * (settings.max_upload_bytes + MULTIPART_OVERHEAD)
        return allowed, allowed
    return SMALL_BODY_LIMIT, SMALL_BODY_LIMIT


def _too_large(limit: int) -> JSONResponse:
    body = error_body(PAYLOAD_TOO_LARGE.code, PAYLOAD_TOO_LARGE.format(limit=limit))
    return JSONResponse(body, PAYLOAD_TOO_LARGE.status)


class _BodyRefused(UploadTooLargeError):
    """Raised into the app once the 413 has been sent; whatever the app answers then is dropped."""


class BodyLimitMiddleware:
    """413 `payload_too_large` for bodies over the route's limit, decided before or while they stream in."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = getattr(self.state, "settings", None)
        if scope["type"] != "http" or settings is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        multipart = headers.get("content-type", "").lower().startswith("multipart/")
        allowed, shown = body_limit(settings, scope["path"], multipart)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > allowed:
            await _too_large(shown)(scope, receive, send)  # the body is left unread (the server discards it)
            return
        received, responded, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, responded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > allowed:
                    if not started:
                        responded = True
                        await _too_large(shown)(scope, receive, send)
                    raise _BodyRefused(shown)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if responded:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_BodyRefused):
            await self.app(scope, limited_receive, guarded_send)
