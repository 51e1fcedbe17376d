"""Startup and shutdown of the app `app.main.create_app` built: model loaded, warmed up and ready -> ... -> queued
requests drained. Here the parts are assembled (manager, batcher, service); `app/core/` knows none of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import NoReturn

import torch
from fastapi import FastAPI

from app.core.config import Settings
from app.core.errors import StartupError
from app.core.logging import configure_logging
from app.grpc.server import GrpcServer, start_grpc
from app.services.decode import DecodePool
from app.services.inference import InferenceService
from app.services.model_manager import ModelManager
from app.services.predictor import BatchingPredictor
from app.workers.rundir import RunDir
from models import ResNetServiceError

log = logging.getLogger("app.startup")


def _fail(app: FastAPI, message: str) -> NoReturn:
    configure_logging()
    log.error("startup failed: %s", message)
    app.state.startup_error = message
    raise StartupError(message)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    configure_logging(settings.log_level)
    torch.set_num_threads(settings.resolved_torch_threads)
    try:
        manager = ModelManager(settings, app.state.metrics, RunDir.from_env())
    except ResNetServiceError as e:
        _fail(app, str(e))
    predictor = BatchingPredictor(settings.max_batch_size, settings.max_batch_delay_ms, settings.queue_size,
                                  app.state.oip_stats.observing(app.state.metrics.batch_observer()))
    pool = DecodePool(settings.resolved_decode_threads, settings.max_image_pixels, app.state.metrics)
    service = InferenceService(manager, predictor, pool, settings.default_top_k, settings.max_upload_bytes)
    app.state.service = service  # from here /health/ready answers 503 (gRPC UNAVAILABLE) until the model is in
    grpc_server = GrpcServer()  # off until started
    try:
        grpc_server = await start_grpc(app.state)
        await manager.start()
    except ResNetServiceError as e:
        await grpc_server.stop(0)
        pool.close()
        app.state.service = None
        _fail(app, str(e))
    predictor.start()
    hup = _install_sighup(manager)
    manager.accept_reloads()
    await grpc_server.serving()
    log.info("ready: %d torch threads, %d decode threads, batches of up to %d within %g ms",
             torch.get_num_threads(), settings.resolved_decode_threads, settings.max_batch_size,
             settings.max_batch_delay_ms)
    try:
        yield
    finally:
        await grpc_server.stop(settings.request_timeout_s)  # drains gRPC calls while the batcher still runs
        await manager.close()
        if hup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await asyncio.to_thread(predictor.stop)  # finishes what is queued first
        pool.close()
        log.info("stopped")


def failing_lifespan(message: str) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that fails at once with `message` (an app built from invalid settings)."""

    @contextlib.asynccontextmanager
    async def fail(app: FastAPI) -> AsyncIterator[None]:
        _fail(app, message)
        yield

    return fail


def _install_sighup(manager: ModelManager) -> bool:
    """SIGHUP reloads the configured checkpoint; only possible on the main thread of a Unix event loop."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, manager.reload_in_background)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return False
    return True
