"""The FastAPI app: `create_app(settings)` for tests, `app` for `uvicorn app.main:app` (settings read at startup)."""

from __future__ import annotations

from fastapi import FastAPI

from app.api.body_limit import BodyLimitMiddleware
from app.api.errors import install_error_handlers
from app.api.middleware import LazyCORSMiddleware, QuietStartupFailureMiddleware, RequestContextMiddleware
from app.api.routes import feature_maps, health, metrics, model, predict
from app.api.routes.docs import install_docs
from app.core.config import Settings
from app.core.lifespan import lifespan
from app.core.metrics import ServiceMetrics
from app.core.openapi import install_openapi

DESCRIPTION = """Image classification with a ResNet checkpoint, with dynamic batching.

Errors are always `{"error": {"code": "...", "message": "..."}}`. When the service runs with `RESNET_API_KEY`,
send the key in the `X-API-Key` header to the predict, batch, feature-map and reload endpoints."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; nothing is loaded until its lifespan starts (settings default to the environment's)."""
    app = FastAPI(title="ResNet inference service", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.service = None
    app.state.startup_error = None
    app.state.admission = None
    app.state.metrics = ServiceMetrics()
    for router in (predict.router, feature_maps.router, model.router, health.router, metrics.router):
        app.include_router(router)
    install_docs(app)
    install_openapi(app)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, state=app.state)
    app.add_middleware(LazyCORSMiddleware, state=app.state)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    app.add_middleware(QuietStartupFailureMiddleware, state=app.state)
    return app


app = create_app()
