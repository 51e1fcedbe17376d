"""Errors as gRPC status codes, derived from the one error catalogue (app/core/errors.py) that HTTP uses."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from app.core.errors import ApiError, api_error_from
from models import ResNetServiceError

# By catalogue code first (one HTTP status can mean several things), then by HTTP status.
_BY_CODE = {"overloaded": grpc.StatusCode.RESOURCE_EXHAUSTED, "not_ready": grpc.StatusCode.UNAVAILABLE,
            "upload_timeout": grpc.StatusCode.DEADLINE_EXCEEDED}
_BY_STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
              403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
              413: grpc.StatusCode.INVALID_ARGUMENT, 415: grpc.StatusCode.INVALID_ARGUMENT,
              422: grpc.StatusCode.INVALID_ARGUMENT, 503: grpc.StatusCode.UNAVAILABLE,
              504: grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass(frozen=True)
class GrpcError:
    """What a failed call answers: the status code, its message and trailing metadata."""

    code: grpc.StatusCode
    message: str
    trailers: tuple[tuple[str, str], ...] = ()


def grpc_error(exc: Exception) -> GrpcError:
    """The gRPC answer to `exc` (an ApiError, a project exception, or anything else: INTERNAL)."""
    if isinstance(exc, ResNetServiceError):
        exc = api_error_from(exc)
    if not isinstance(exc, ApiError):
        return GrpcError(grpc.StatusCode.INTERNAL, "internal server error")
    code = _BY_CODE.get(exc.code) or _BY_STATUS.get(exc.status, grpc.StatusCode.INTERNAL)
    retry = exc.headers.get("Retry-After")
    if retry is None:
        return GrpcError(code, exc.message)
    return GrpcError(code, f"{exc.message} (retry after {retry} s)", (("retry-after", retry),))


