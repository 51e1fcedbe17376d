"""The FastAPI app, built from its settings: `create_app(settings)` (tests, `uvicorn --factory app.main:create_app`).

`resnet-serve` runs `create_app` as a uvicorn factory in each worker; `uvicorn app.main:app` also works (the
module attribute `app` is built on first access from the environment's settings). Nothing is loaded until the
lifespan starts (app/lifespan.py).
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.middleware.cors import CORSMiddleware

from app import __version__
from app.api.body_limit import BodyLimitMiddleware, RouteLimits
from app.api.errors import install_error_handlers
from app.api.middleware import QuietStartupFailureMiddleware, RequestContextMiddleware
from app.api.routes import explain, feature_maps, health, metrics, model, predict, ui, v2
from app.api.routes.docs import install_docs
from app.core.admission import Admission
from app.core.config import Settings, get_settings, settings_error_line
from app.core.metrics import ServiceMetrics
from app.core.openapi import install_openapi
from app.lifespan import failing_lifespan, lifespan
from app.services.explain import ExplainService
from app.services.oip_stats import ModelStats

DESCRIPTION = """Image classification with a ResNet checkpoint, with dynamic batching.

Errors are always `{"error": {"code": "...", "message": "..."}}`. When the service runs with `RESNET_API_KEY`,
send the key in the `X-API-Key` header to the predict, batch, feature-map, explain and reload endpoints."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: the environment's; with invalid ones, an app whose startup fails with
    one line, as for any other startup failure)."""
    if settings is None:
        try:
            settings = get_settings()
        except ValidationError as e:
            return failed_app(settings_error_line(e))
    app = FastAPI(title="ResNet inference service", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.service = None  # set by the lifespan; routes answer 503 `not_ready` until then
    app.state.startup_error = None
    app.state.metrics = ServiceMetrics()
    app.state.oip_stats = ModelStats()  # Triton's statistics extension, on /v2 and gRPC
    app.state.admission = Admission(settings.queue_size + settings.max_batch_size, app.state.metrics.in_flight.set)
    app.state.explainer = ExplainService(settings, app.state.metrics)
    routers = [predict.router, feature_maps.router, explain.router, model.router, health.router, metrics.router,
               v2.router, ui.router]
    for router in routers:
        app.include_router(router)
    install_docs(app)
    install_openapi(app)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, settings=settings, limits=RouteLimits(routers))
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["X-Request-ID", "Retry-After"])
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    app.add_middleware(QuietStartupFailureMiddleware, state=app.state)
    return app


def failed_app(message: str) -> FastAPI:
    """An app that refuses to start, logging `startup failed: message` once (uvicorn then exits non-zero)."""
    app = FastAPI(lifespan=failing_lifespan(message), docs_url=None, redoc_url=None, openapi_url=None)
    app.state.startup_error = message
    app.add_middleware(QuietStartupFailureMiddleware, state=app.state)
    return app


def __getattr__(name: str) -> FastAPI:
    """`app.main:app` for `uvicorn app.main:app`: built from the environment when first asked for."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
