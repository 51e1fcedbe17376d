"""The app in this process: its lifespan running (model loaded, inference thread started) and an httpx client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from app.core.config import Settings
from app.main import create_app


@contextlib.asynccontextmanager
async def serve(settings: Settings, headers: dict[str, str] | None = None,
                ) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    """The app with its lifespan running, and an httpx client talking to it in-process (sending `headers`)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as client:
            yield application, client
