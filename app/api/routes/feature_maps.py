"""POST /v1/feature-maps: a PNG grid of one layer's activations for an uploaded image."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.api.body_limit import limit_body, single_image
from app.api.deps import DeadlineDep, ImageUpload, ServiceDep, admit, require_api_key
from app.api.uploads import image_body
from app.core import errors as e

router = APIRouter(prefix="/v1", tags=["feature maps"], dependencies=[Depends(require_api_key), Depends(admit)])


@router.post(
    "/feature-maps", summary="Show one layer's feature maps", response_class=Response,
    description="Same upload and preprocessing as `/v1/predict`. `layer` is one of the model's feature layers "
                "(`conv1` = the stem after BN and ReLU, `layer1`..`layer4`; see `GET /v1/model`). Each channel is "
                "scaled to 0..255 on its own and drawn as one tile of a grayscale grid.",
    responses={200: {"content": {"image/png": {}}, "description": "PNG grid, one tile per channel."},
               **e.error_responses(e.INVALID_IMAGE, e.BAD_REQUEST, e.UNSUPPORTED_IMAGE_TYPE, e.UNKNOWN_LAYER,
                                   e.MISSING_FILE, e.UNAUTHORIZED, e.UPLOAD_TIMEOUT, e.PAYLOAD_TOO_LARGE,
                                   e.IMAGE_TOO_LARGE, e.UNSUPPORTED_MEDIA_TYPE, e.INVALID_REQUEST, e.NOT_READY,
                                   e.OVERLOADED, e.TIMEOUT, e.INTERNAL_ERROR)},
    openapi_extra=image_body("file"),
)
@limit_body(single_image)
async def feature_maps(
    service: ServiceDep,
    upload: ImageUpload,
    deadline: DeadlineDep,
    layer: Annotated[str, Query(description="Layer name, e.g. `conv1`, `layer1` .. `layer4`.")] = "layer1",
    channels: Annotated[int, Query(ge=1, le=64, description="How many channels to draw (the first ones).")] = 16,
) -> Response:
    png, shape = await service.feature_maps(upload, layer, channels, deadline)
    headers = {"X-Feature-Layer": layer, "X-Feature-Shape": "x".join(map(str, shape)),
               "X-Feature-Channels": str(min(channels, shape[0]))}
    return Response(png, media_type="image/png", headers=headers)
