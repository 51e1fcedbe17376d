"""The API key check, the one definition for every transport (HTTP `X-API-Key`, gRPC metadata `x-api-key`)."""

from __future__ import annotations

import hmac

from app.core.config import Settings
from app.core.errors import UNAUTHORIZED, ApiError


def check_api_key(settings: Settings, provided: str | None) -> None:
    """401 (gRPC UNAUTHENTICATED) unless RESNET_API_KEY is unset or `provided` matches it, in constant time."""
    expected = settings.api_key_value
    if expected is None:
        return
    if provided is None or not hmac.compare_digest(provided.encode(), expected.encode()):
        raise ApiError(UNAUTHORIZED, headers={"WWW-Authenticate": "APIKey"})
