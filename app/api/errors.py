"""Exception handlers: every error leaves with its catalogue status as `{"error": {"code", "message"}}`, or, on the
Open Inference Protocol's paths (`/v2...`), as that protocol's `{"error": "message"}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app.core.errors import (
    BAD_REQUEST,
    INVALID_REQUEST,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    UNAUTHORIZED,
    ApiError,
    ErrorKind,
    api_error_from,
    error_body,
)
from models import ResNetServiceError

CLIENT_CLOSED_REQUEST = 499
_HTTP_KINDS = {400: BAD_REQUEST, 401: UNAUTHORIZED, 404: NOT_FOUND, 405: METHOD_NOT_ALLOWED}


OIP_PREFIX = "/v2"


def error_content(path: str, code: str, message: str) -> dict[str, Any]:
    """The error body for a request to `path`: the protocol's own shape under /v2, ours elsewhere."""
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        return {"error": message}
    return error_body(code, message)


def error_response(err: ApiError, path: str = "") -> JSONResponse:
    return JSONResponse(error_content(path, err.code, err.message), status_code=err.status, headers=err.headers)


def validation_message(exc: RequestValidationError) -> str:
    """`query.top_k: Input should be greater than or equal to 1`, one clause per problem."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{where}: {e.get('msg', 'invalid value')}" if where else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc, request.url.path)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ResNetServiceError)
    return error_response(api_error_from(exc), request.url.path)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(ApiError(INVALID_REQUEST, detail=validation_message(exc)), request.url.path)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = _HTTP_KINDS.get(exc.status_code) or ErrorKind(exc.status_code, "http_error", "{detail}")
    return error_response(ApiError(kind, headers=dict(exc.headers or {}), detail=exc.detail), request.url.path)


async def _client_gone(_: Request, exc: Exception) -> Response:
    """The client hung up mid-upload: nobody is there to answer; 499 (as nginx) goes to the log and metrics only."""
    return Response(status_code=CLIENT_CLOSED_REQUEST)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ResNetServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
