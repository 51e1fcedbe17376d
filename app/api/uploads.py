"""Reading uploads: per-file byte limits, and the request deadline while the body arrives (slow clients).

The whole body's size is capped before this runs (app/api/body_limit.py); here each file is checked against
RESNET_MAX_UPLOAD_BYTES, and a body that has not fully arrived by the request deadline is 408 `upload_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from app.core.deadline import Deadline
from app.core.errors import (
    MISSING_FILE,
    TOO_MANY_FILES,
    UNSUPPORTED_MEDIA_TYPE,
    ApiError,
    UploadTimeoutError,
    UploadTooLargeError,
)
from models.preprocess import IMAGE_FORMAT_NAMES

CHUNK = 64 * 1024
MAX_FORM_FIELDS = 64  # text fields next to the files; starlette's default of 1000 only wastes memory
# Raw bodies: image/* (sniffed again when decoding), plus what `curl --data-binary` sends without -H.
RAW_TYPES = {"", "application/octet-stream", "application/x-www-form-urlencoded"}
REFUSED_IMAGE_TYPES = {"image/svg+xml"}

_binary = {"type": "string", "format": "binary", "minLength": 1}
IMAGE_DESCRIPTION = f"The image: {IMAGE_FORMAT_NAMES} (a GIF's first frame). SVG and PDF are refused (415)."
# What the schema promises is accepted: image files of these types. The server is more lenient than that (BMP, TIFF,
# a raw body sent as application/octet-stream, sniffed by content), but a schema cannot say "a decodable image" of
# an untyped body, so it names the types it can.
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


def image_body(field: str = "file", many: bool = False) -> dict[str, Any]:
    """OpenAPI requestBody for routes that read their body by hand (multipart, or a raw image if single)."""
    # A batch answers each file on its own (an empty one gets its own error entry), so its items may be empty.
    item = {k: v for k, v in _binary.items() if k != "minLength"}
    prop = {"type": "array", "items": item, "minItems": 1} if many else _binary
    content: dict[str, Any] = {"multipart/form-data": {
        "schema": {"type": "object", "required": [field],
                   "properties": {field: {**prop, "description": IMAGE_DESCRIPTION}}},
        "encoding": {field: {"contentType": ", ".join(IMAGE_TYPES)}}}}
    if not many:
        content.update({media_type: {"schema": _binary} for media_type in IMAGE_TYPES})
    return {"requestBody": {"required": True, "content": content}}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@contextlib.asynccontextmanager
async def _arriving_by(deadline: Deadline) -> AsyncIterator[None]:
    """Stop reading at the request deadline: a client that sends slowly or stops sending gets 408."""
    try:
        async with asyncio.timeout(deadline.remaining()):
            yield
    except TimeoutError:
        raise UploadTimeoutError(deadline.timeout_s) from None


async def read_capped(upload: UploadFile, limit: int) -> bytes:
    """The file's bytes, reading in chunks and stopping as soon as it passes `limit`."""
    if upload.size is not None and upload.size > limit:
        raise UploadTooLargeError(limit)
    chunks, total = [], 0
    while chunk := await upload.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise UploadTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_image(request: Request, limit: int, deadline: Deadline, field: str = "file") -> bytes:
    """One image from a multipart field `field` or from a raw image/* body, fully arrived by `deadline`."""
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        async with _arriving_by(deadline), request.form(max_files=1, max_fields=MAX_FORM_FIELDS) as form:
            upload = form.get(field)
            if not isinstance(upload, UploadFile):
                raise ApiError(MISSING_FILE, field=field)
            return await read_capped(upload, limit)
    if media_type in RAW_TYPES or (media_type.startswith("image/") and media_type not in REFUSED_IMAGE_TYPES):
        async with _arriving_by(deadline):
            return await request.body()  # its size is capped by BodyLimitMiddleware, exactly at `limit`
    raise ApiError(UNSUPPORTED_MEDIA_TYPE, content_type=media_type)


async def read_body(request: Request, deadline: Deadline) -> bytes:
    """The whole raw body, fully arrived by `deadline` (its size is capped by BodyLimitMiddleware)."""
    async with _arriving_by(deadline):
        return await request.body()


async def read_images(request: Request, limit: int, max_files: int, deadline: Deadline,
                      field: str = "files") -> list[tuple[str | None, bytes | UploadTooLargeError]]:
    """Up to `max_files` images from a multipart field; an oversized file is returned as its error, in place."""
    media_type = _media_type(request)
    if media_type != "multipart/form-data":
        raise ApiError(UNSUPPORTED_MEDIA_TYPE, content_type=media_type)
    try:
        async with (_arriving_by(deadline),
                    request.form(max_files=max_files, max_fields=MAX_FORM_FIELDS) as form):
            uploads = [u for u in form.getlist(field) if isinstance(u, UploadFile)]
            if not uploads:
                raise ApiError(MISSING_FILE, field=field)
            return [(u.filename, await _capped_or_error(u, limit)) for u in uploads]
    except HTTPException as e:
        if "Too many files" in str(e.detail):
            raise ApiError(TOO_MANY_FILES, limit=max_files) from None
        raise


async def _capped_or_error(upload: UploadFile, limit: int) -> bytes | UploadTooLargeError:
    try:
        return await read_capped(upload, limit)
    except UploadTooLargeError as e:
        return e
