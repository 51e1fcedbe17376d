"""Request body limits, declared with each route and enforced before its handler reads anything.

A route says what it takes with `@limit_body(single_image)` / `@limit_body(image_batch)`; every other route takes
at most a small JSON body. A body over its route's limit is refused with 413 at once from Content-Length, or as
soon as the bytes received pass the limit (chunked bodies), so it is never held whole: multipart files included,
which the form parser would otherwise spool to disk before any per-file check ran.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_content
from app.core.config import Settings
from app.core.errors import PAYLOAD_TOO_LARGE, UploadTooLargeError

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the file bytes
SMALL_BODY_LIMIT = 64 * 1024  # routes that declare nothing take at most a small JSON body (model reload)

BodyLimit = Callable[[Settings, bool], tuple[int, int]]  # (settings, multipart) -> (allowed, limit in the 413)
F = TypeVar("F", bound=Callable[..., Any])


def single_image(settings: Settings, multipart: bool) -> tuple[int, int]:
    """One image of at most RESNET_MAX_UPLOAD_BYTES, raw or as one multipart file."""
    return settings.max_upload_bytes + (MULTIPART_OVERHEAD if multipart else 0), settings.max_upload_bytes


def image_batch(settings: Settings, multipart: bool) -> tuple[int, int]:
    """RESNET_MAX_BATCH_FILES images of at most RESNET_MAX_UPLOAD_BYTES each."""
    allowed = settings.max_batch_files * (settings.max_upload_bytes + MULTIPART_OVERHEAD)
    return allowed, allowed


def small_body(settings: Settings, multipart: bool) -> tuple[int, int]:
    return SMALL_BODY_LIMIT, SMALL_BODY_LIMIT


def limit_body(limit: BodyLimit) -> Callable[[F], F]:
    """Declare an endpoint's body limit; put it below the route decorator, so that the route sees the mark."""

    def mark(endpoint: F) -> F:
        endpoint.body_limit = limit  # type: ignore[attr-defined]
        return endpoint

    return mark


class RouteLimits:
    """Path pattern -> declared limit, collected from the routers' endpoints when the app is built."""

    def __init__(self, routers: list[APIRouter]) -> None:
        self._table = [(compile_path(route.path)[0], route.endpoint.body_limit)
                       for router in routers for route in router.routes
                       if isinstance(route, APIRoute) and hasattr(route.endpoint, "body_limit")]

    def __call__(self, path: str) -> BodyLimit:
        """The limit of the route serving `path` (`small_body` where none is declared)."""
        return next((limit for pattern, limit in self._table if pattern.match(path)), small_body)


def _too_large(limit: int, path: str) -> JSONResponse:
    body = error_content(path, PAYLOAD_TOO_LARGE.code, PAYLOAD_TOO_LARGE.format(limit=limit))
    return JSONResponse(body, PAYLOAD_TOO_LARGE.status)


class _BodyRefused(UploadTooLargeError):
    """Raised into the app once the 413 has been sent; whatever the app answers then is dropped."""


class BodyLimitMiddleware:
    """413 `payload_too_large` for bodies over the route's limit, decided before or while they stream in."""

    def __init__(self, app: ASGIApp, settings: Settings, limits: RouteLimits) -> None:
        self.app = app
        self.settings = settings
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        multipart = headers.get("content-type", "").lower().startswith("multipart/")
        allowed, shown = self.limits(scope["path"])(self.settings, multipart)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > allowed:
            await _too_large(shown, scope["path"])(scope, receive, send)  # the body is left unread (discarded)
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
                        await _too_large(shown, scope["path"])(scope, receive, send)
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
