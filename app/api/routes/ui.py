"""GET /: a small web page to try the model (upload an image, top-5, model facts, feature maps), and its /ui files.

The page is three static files in app/static/ui/ that talk to the JSON API like any other client, so it works
offline. Its Content-Security-Policy allows this origin only (and blob:/data: images): the page cannot load or send
anything elsewhere. None of it is in the OpenAPI schema; HEAD is answered like GET.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse

from app.core.errors import NOT_FOUND, ApiError

STATIC = Path(__file__).resolve().parents[2] / "static" / "ui"
CSP = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob: data:",
    "connect-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
])
# no-cache: revalidated (ETag) on every load, so a new release never runs an old app.js against a new API
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}

router = APIRouter(include_in_schema=False)


def _static(name: str, media_type: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type=media_type, headers=HEADERS)


@router.api_route("/", methods=["GET", "HEAD"])
async def index() -> FileResponse:
    return _static("index.html", "text/html")


@router.api_route("/ui/{name}", methods=["GET", "HEAD"])
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise ApiError(NOT_FOUND, detail=f"no such UI file: {name}")
    return _static(name, ASSETS[name])
