"""`resnet-serve`: run the service under uvicorn with the RESNET_* settings (flags override host, port, workers).

With several workers they share one port, one set of metrics and one model: a reload reaches all of them."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pydantic import ValidationError

from app.core.config import Settings, settings_error_line


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="resnet-serve", description=__doc__,
                                epilog="Every other setting is read from RESNET_* environment variables (README.md).")
    server = p.add_argument_group("server")
    server.add_argument("--host", default=settings.host, help="bind address (RESNET_HOST; default: %(default)s)")
    server.add_argument("--port", type=int, default=settings.port, help="TCP port (RESNET_PORT; default: %(default)s)")
    server.add_argument("--workers", type=int, default=settings.workers,
                        help="worker processes on one port, each with its own copy of the model; metrics and "
                             "reloads cover all of them (RESNET_WORKERS; default: %(default)s)")
    return p.parse_args(argv)


def preflight(settings: Settings) -> str:
    """Load the checkpoint (and open RESNET_ONNX_PATH) once in the supervisor, so that a broken deployment stops
    with one line instead of one per worker; its sha256. Raises `ResNetServiceError` with the reason."""
    from app.services.model_manager import open_configured_backend, service_device
    from app.services.model_source import configured_source
    from models import load_checkpoint

    device = service_device(settings.device)
    source = configured_source(settings)
    ckpt = load_checkpoint(source.checkpoint, class_index=source.class_index, arch=source.arch,
                           arch_kwargs=source.arch_kwargs, preprocess=source.preprocess)
    if settings.onnx_path:  # the artifact's sha256 and precision against its runtime, as each worker will check
        open_configured_backend(settings, ckpt, device)
    return ckpt.sha256


def serve_workers(settings: Settings, config_kwargs: dict[str, Any]) -> int:
    """Several workers that behave as one server: shared metrics, one model (app/workers/). uvicorn starts each
    worker from an import string, so a worker reads its settings (the flags included) and the run directory from
    the environment it inherits: the one channel to a spawned worker."""
    from uvicorn import Config

    from app.services.model_source import configured_source
    from app.workers.cluster import source_to_json
    from app.workers.rundir import RunDir
    from app.workers.supervisor import serve_workers as supervise
    from models import ResNetServiceError

    try:
        sha256 = preflight(settings)
    except ResNetServiceError as e:
        print(f"resnet-serve: startup failed: {e}", file=sys.stderr)
        return 1
    run = RunDir.create()
    inherited = {**run.environ(), **_flag_settings(settings)}
    try:
        run.commit(0, source_to_json(configured_source(settings)), sha256)
        os.environ.update(inherited)
        return supervise(Config("app.main:create_app", factory=True, **config_kwargs), run)
    finally:
        for name in inherited:
            os.environ.pop(name, None)
        run.remove()


def _flag_settings(settings: Settings) -> dict[str, str]:
    return {"RESNET_HOST": settings.host, "RESNET_PORT": str(settings.port), "RESNET_WORKERS": str(settings.workers)}


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings()
    except ValidationError as e:
        print(f"resnet-serve: {settings_error_line(e)}", file=sys.stderr)
        return 2
    args = parse_args(argv, settings)
    if args.workers < 1:
        print("resnet-serve: --workers must be at least 1", file=sys.stderr)
        return 2

    settings = settings.model_copy(update={"host": args.host, "port": args.port, "workers": args.workers})
    config = {"host": args.host, "port": args.port, "workers": args.workers, "log_level": settings.log_level,
              "access_log": False, "lifespan": "on", "timeout_graceful_shutdown": settings.request_timeout_s}
    if args.workers > 1:
        return serve_workers(settings, config)

    import uvicorn

    from app.main import create_app

    uvicorn.run(create_app(settings), **config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
