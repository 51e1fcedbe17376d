"""Fixtures of the container tests: the session's compose project (`stack`), started with `up -d --wait` (`up`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.container.container_stack import (
    COMPOSE_FILE,
    READY_TIMEOUT_S,
    REPO,
    Stack,
    free_port_range,
    logs,
    make_imagefolder,
    need_env,
    record,
    started_at,
)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The project, not yet started (test_01 starts it with `up -d --wait`); `down -v` at the end in any case."""
    image, lb_image = need_env("RESNET_CT_IMAGE"), need_env("RESNET_CT_LB_IMAGE")
    project = os.environ.get("RESNET_CT_PROJECT") or f"resnet-ct-{os.getpid()}"
    # World-readable, outside pytest's 0700 temp folders: the trainer (uid 10001) reads the dataset from here.
    workdir = Path(tempfile.mkdtemp(prefix="resnet-ct-"))
    workdir.chmod(0o755)
    (workdir / "empty.env").write_text("")  # instead of a developer's .env beside docker-compose.yml
    data = make_imagefolder(workdir / "data")
    first, last = free_port_range(3)
    grpc_first, grpc_last = free_port_range(3)
    lb_port, _ = free_port_range(1)
    # The service's settings come only from what the test sets: no RESNET_* or compose knob of this shell leaks in.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RESNET_", "COMPOSE_", "DOCKER_BUILDKIT", "PIP_", "TORCH_INDEX_URL"))
           and k not in ("IMAGE", "API_PORT", "GRPC_PORT", "LB_PORT", "DATA_DIR", "LB_IMAGE", "TRAIN_NPROC",
                         "TORCHRUN_ARGS", "PUBLISH", "PYTHON_IMAGE")}
    env.update(IMAGE=image, LB_IMAGE=lb_image, API_PORT=f"{first}-{last}", GRPC_PORT=f"{grpc_first}-{grpc_last}",
               LB_PORT=str(lb_port), DATA_DIR=str(data))
    s = Stack(project, env, workdir)
    try:
        yield s
    finally:
        s.compose("--profile", "lb", "--profile", "train", "down", "-v", "--remove-orphans", "--timeout", "10",
                  check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def up(stack: Stack) -> Stack:
    """`docker compose up -d --wait`, with the time from the container's start to its first 200 on /health/ready."""
    t0 = time.time()
    proc = subprocess.Popen(
        ["docker", "compose", "--project-name", stack.project, "--env-file", str(stack.workdir / "empty.env"),
         "-f", str(COMPOSE_FILE), "up", "-d", "--wait", "--wait-timeout", str(READY_TIMEOUT_S)],
        env=stack.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready_at = url = None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while ready_at is None and time.monotonic() < deadline:
        if url is None:
            with contextlib.suppress(AssertionError, IndexError):
                if stack.containers():
                    url = stack.api_url()
        if url is not None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    ready_at = time.time()
        if url is None and proc.poll() is not None:
            break  # compose has finished (or failed) without an api container: its output says why
        time.sleep(0.1)
    out, _ = proc.communicate(timeout=READY_TIMEOUT_S)
    assert proc.returncode == 0, f"docker compose up -d --wait failed:\n{out}\n{logs(stack)}"
    (api,) = stack.containers()
    assert ready_at is not None, f"/health/ready never answered 200:\n{logs(stack)}"
    record(f"up -d --wait: {time.time() - t0:.1f} s to healthy; container start to /health/ready 200: "
           f"{ready_at - started_at(api):.1f} s")
    return stack


