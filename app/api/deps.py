"""Dependencies shared by the routes: the service, the settings, API-key checks."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from app.core.config import Settings
from app.core.errors import UNAUTHORIZED, ApiError, NotReadyError
from app.services.inference import InferenceService

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="Required when the service runs with RESNET_API_KEY set.")


def get_service(request: Request) -> InferenceService:
    """The service built by the lifespan; 503 `not_ready` when there is none (yet)."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReadyError("the service is not started")
    return service


def get_settings(request: Request) -> Settings:
    settings = getattr(request.app.state, "settings", None)
    if settings is None:
        raise NotReadyError("the service is not started")
    return settings


async def admit(request: Request) -> AsyncIterator[None]:
    """Hold one of the image-request slots until the response is done; 503 `overloaded` when none is free."""
    admission = getattr(request.app.state, "admission", None)
    if admission is None:
        raise NotReadyError("the service is not started")
    with admission.slot():
        yield


def _check_key(settings: Settings, provided: str | None) -> None:
    expected = settings.api_key_value
    if expected is None:
        return
    if provided is None or not hmac.compare_digest(provided.encode(), expected.encode()):
        raise ApiError(UNAUTHORIZED, headers={"WWW-Authenticate": "APIKey"})


def require_api_key(request: Request, api_key: str | None = Security(api_key_header)) -> None:
    """401 unless RESNET_API_KEY is unset or the X-API-Key header matches it."""
    _check_key(get_settings(request), api_key)


def require_metrics_key(request: Request, api_key: str | None = Security(api_key_header)) -> None:
    """Like `require_api_key`, but only when RESNET_PROTECT_METRICS is on."""
    settings = get_settings(request)
    if settings.protect_metrics:
        _check_key(settings, api_key)
