"""`resnet-serve`: run the service under uvicorn with the RESNET_* settings (flags override host, port, workers)."""

from __future__ import annotations

import argparse
import os
import sys

from pydantic import ValidationError

from app.core.config import Settings, settings_error_line


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="resnet-serve", description=__doc__,
                                epilog="Every other setting is read from RESNET_* environment variables (README.md).")
    server = p.add_argument_group("server")
    server.add_argument("--host", default=settings.host, help="bind address (RESNET_HOST; default: %(default)s)")
    server.add_argument("--port", type=int, default=settings.port, help="TCP port (RESNET_PORT; default: %(default)s)")
    server.add_argument("--workers", type=int, default=settings.workers,
                        help="worker processes, each with its own model (RESNET_WORKERS; default: %(default)s)")
    return p.parse_args(argv)


def preflight(settings: Settings) -> str | None:
    """Load the checkpoint once in the supervisor: with several workers, uvicorn would respawn failing ones."""
    from app.services.model_manager import configured_source, resolve_device
    from models import ResNetServiceError, load_checkpoint

    try:
        resolve_device(settings.device)
        source = configured_source(settings)
        load_checkpoint(source.checkpoint, class_index=source.class_index, arch=source.arch,
                        arch_kwargs=source.arch_kwargs, preprocess=source.preprocess)
    except ResNetServiceError as e:
        return str(e)
    return None


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
    if args.workers > 1 and (problem := preflight(settings)):
        print(f"resnet-serve: startup failed: {problem}", file=sys.stderr)
        return 1

    import uvicorn

    # Each worker reads its settings again from the environment; the flags reach them through it.
    os.environ.update(RESNET_HOST=args.host, RESNET_PORT=str(args.port), RESNET_WORKERS=str(args.workers))
    uvicorn.run("app.main:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level=settings.log_level, access_log=False, lifespan="on",
                timeout_graceful_shutdown=settings.request_timeout_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
