"""POST /v1/explain: a class heatmap (Grad-CAM, LayerCAM) for an uploaded image, as a PNG overlay or as JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from app.api.body_limit import limit_body, single_image
from app.api.deps import DeadlineDep, ImageUpload, ManagerDep, require_api_key
from app.api.uploads import image_body
from app.core import errors as e
from app.schemas.explain import ExplainResponse
from app.schemas.predict import Prediction
from app.services.explain import ExplainResult, ExplainService
from models.explain import Method
from models.postprocess import top_k


def get_explainer(request: Request) -> ExplainService:
    """The explanation service `create_app` built (its threads, slots and private model copies)."""
    return request.app.state.explainer


ExplainerDep = Annotated[ExplainService, Depends(get_explainer)]


async def admit_explanation(explainer: ExplainerDep) -> AsyncIterator[None]:
    """Hold one of RESNET_EXPLAIN_CONCURRENCY slots until the response is done; 503 `overloaded` when none is free."""
    with explainer.slot():
        yield


router = APIRouter(prefix="/v1", tags=["explain"],
                   dependencies=[Depends(require_api_key), Depends(admit_explanation)])

DESCRIPTION = (
    "Which part of the image the class score came from. Same upload, preprocessing, limits and errors as "
    "`/v1/predict`. The map is computed on the checkpoint's torch model (whatever backend serves predictions): "
    "`gradcam` weights each channel of `layer` by the spatial mean of the class score's gradient and keeps the "
    "positive part of the weighted sum; `layercam` weights each position by the positive gradient. It is upsampled "
    "(bilinear) to the crop and min-max scaled to [0, 1].\n\n"
    "Default answer: `image/png`, the heatmap blended over the crop the model saw (in its original colours, enlarged "
    "to at least 224 px) with a colour scale (blue 0 to red 1); headers `X-Explain-Target` (class index), "
    "`X-Explain-Score`, `X-Explain-Method`, `X-Explain-Layer`. With `Accept: application/json` (and not "
    "`image/png`): the numbers. At most RESNET_EXPLAIN_CONCURRENCY explanations run at once; more get 503 "
    "`overloaded` with `Retry-After`."
)


def wants_json(accept: str | None) -> bool:
    """JSON only when the client asks for it and not for PNG; PNG otherwise (browsers, `*/*`, no header)."""
    accept = (accept or "").lower()
    return "application/json" in accept and "image/png" not in accept


def json_answer(result: ExplainResult, classes: list[str]) -> JSONResponse:
    ex = result.explanation
    probs = ex.logits.float().softmax(dim=0)
    body = ExplainResponse(
        target=Prediction(label=classes[ex.target], index=ex.target, score=float(probs[ex.target])),
        method=ex.method, layer=ex.layer, size=list(ex.heatmap.shape), heatmap=ex.heatmap.tolist(),
        predictions=[Prediction(**p) for p in top_k(ex.logits, classes, 5)[0]])
    return JSONResponse(body.model_dump())


def png_answer(result: ExplainResult) -> Response:
    ex = result.explanation
    score = float(ex.logits.float().softmax(dim=0)[ex.target])
    headers = {"X-Explain-Target": str(ex.target), "X-Explain-Score": f"{score:.6f}",
               "X-Explain-Method": ex.method, "X-Explain-Layer": ex.layer}
    return Response(result.png, media_type="image/png", headers=headers)


@router.post(
    "/explain", summary="Show which part of the image a class came from", response_class=Response,
    description=DESCRIPTION,
    responses={200: {"model": ExplainResponse, "content": {"image/png": {}},
                     "description": "PNG overlay (default), or JSON with `Accept: application/json`."},
               **e.error_responses(e.INVALID_IMAGE, e.BAD_REQUEST, e.UNSUPPORTED_IMAGE_TYPE, e.UNKNOWN_LAYER,
                                   e.UNKNOWN_TARGET, e.MISSING_FILE, e.UNAUTHORIZED, e.UPLOAD_TIMEOUT,
                                   e.PAYLOAD_TOO_LARGE, e.IMAGE_TOO_LARGE, e.UNSUPPORTED_MEDIA_TYPE,
                                   e.INVALID_REQUEST, e.NOT_READY, e.EXPLAIN_OVERLOADED, e.TIMEOUT,
                                   e.INTERNAL_ERROR)},
    openapi_extra=image_body("file"),
)
@limit_body(single_image)
async def explain(
    manager: ManagerDep,
    explainer: ExplainerDep,
    upload: ImageUpload,
    deadline: DeadlineDep,
    target: Annotated[str | None, Query(description="Class to explain: a label or an index 0..K-1 "
                                                    "(default: the top-1 class).")] = None,
    method: Annotated[Method, Query(description="`gradcam` (Selvaraju et al. 2017) or `layercam` "
                                                "(Jiang et al. 2021).")] = "gradcam",
    layer: Annotated[str | None, Query(description="Layer name, `conv1`, `layer1` .. (default: the last "
                                                   "stage).")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    model = manager.model()
    as_json = wants_json(accept)
    result = await explainer.explain(model, upload, target, method, layer, not as_json, deadline)
    return json_answer(result, model.checkpoint.classes) if as_json else png_answer(result)
