"""Startup and shutdown: settings -> model loaded, warmed up and ready -> ... -> queued requests drained."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import NoReturn

import torch
from fastapi import FastAPI
from pydantic import ValidationError

from app.core.admission import Admission
from app.core.config import Settings, get_settings, settings_error_line
from app.core.errors import StartupError
from app.core.logging import configure_logging
from app.services.inference import InferenceService
from app.services.model_manager import ModelManager
from app.services.predictor import BatchingPredictor
from models import ResNetServiceError

log = logging.getLogger("app.startup")


def resolve_settings(app: FastAPI) -> Settings:
    """The settings `create_app` was given, else the environment's; invalid ones stop startup in one line."""
    if app.state.settings is not None:
        return app.state.settings
    try:
        return get_settings()
    except ValidationError as e:
        _fail(app, settings_error_line(e))


def _fail(app: FastAPI, message: str) -> NoReturn:
    configure_logging()
    log.error("startup failed: %s", message)
    app.state.startup_error = message
    raise StartupError(message)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = resolve_settings(app)
    configure_logging(settings.log_level)
    torch.set_num_threads(settings.resolved_torch_threads)
    app.state.settings = settings
    app.state.admission = Admission(settings.queue_size + settings.max_batch_size, app.state.metrics.in_flight.set)
    try:
        manager = ModelManager(settings, app.state.metrics)
    except ResNetServiceError as e:
        _fail(app, str(e))
    predictor = BatchingPredictor(settings.max_batch_size, settings.max_batch_delay_ms, settings.queue_size,
                                  app.state.metrics.batch_observer())
    service = InferenceService(settings, manager, predictor, app.state.metrics)
    app.state.service = service  # from here /health/ready answers 503 until the model is in
    try:
        manager.activate(await asyncio.to_thread(manager.load))
    except ResNetServiceError as e:
        service.close()
        app.state.service = None
        _fail(app, str(e))
    predictor.start()
    hup = _install_sighup(manager)
    log.info("ready: %d torch threads, %d decode threads, batches of up to %d within %g ms",
             torch.get_num_threads(), settings.resolved_decode_threads, settings.max_batch_size,
             settings.max_batch_delay_ms)
    try:
        yield
    finally:
        if hup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await asyncio.to_thread(predictor.stop)  # finishes what is queued first
        service.close()
        log.info("stopped")


def _install_sighup(manager: ModelManager) -> bool:
    """SIGHUP reloads the configured checkpoint; only possible on the main thread of a Unix event loop."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, manager.reload_in_background)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return False
    return True
