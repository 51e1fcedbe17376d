"""The image's exact CMD, run here as a local process: only the bind address and port change (127.0.0.1 and a free
port), the executable is the venv's, the working directory is the repository (the image's WORKDIR holds weights/).

It serves the default weights/model.pt when that file exists, exactly as the container does; while it does not
exist yet, RESNET_CHECKPOINT points at a tiny 3-class resnet20 checkpoint built in a fixture. Either way it must
become ready, pass the image's HEALTHCHECK and the compose health check, predict what the model loaded directly
predicts, reload on SIGHUP (`docker compose kill -s SIGHUP api`) and shut down gracefully on SIGTERM (`docker stop`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from devkit.checkpoints import make_checkpoint
from devkit.images import image_bytes
from devkit.server import free_port
from models import default_preprocess, load_checkpoint, load_image_tensor
from tests.deploy.deploy_files import (
    COMPOSE,
    REPO,
    VENV_BIN,
    exec_form,
    final_stage,
    healthcheck_command,
    load_yaml,
    only,
    read_dockerfile,
)

DEFAULT_WEIGHTS = REPO / "weights" / "model.pt"
CONTAINER_HEALTH_URL = "http://127.0.0.1:8000/health/ready"
STARTUP_TIMEOUT_S = 180

pytestmark = pytest.mark.slow


def image_command(port: int) -> list[str]:
    """The Dockerfile's CMD with --host/--port replaced and the program resolved in this venv."""
    cmd = exec_form(only(final_stage(read_dockerfile()), "CMD").args)
    assert "--host" in cmd and "--port" in cmd, cmd
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("--port") + 1] = str(port)
    program = VENV_BIN / cmd[0]
    assert program.exists(), f"{cmd[0]} is not installed in {VENV_BIN} (pip install -e .)"
    return [str(program), *cmd[1:]]


def local_probe(argv: list[str], port: int) -> list[str]:
    """A health-check argv from the image, aimed at this process: `python` is this venv's, the port ours."""
    assert argv[0] == "python" and CONTAINER_HEALTH_URL in argv[-1], argv
    return [sys.executable, *argv[1:-1], argv[-1].replace(CONTAINER_HEALTH_URL, f"http://127.0.0.1:{port}/health/ready")]


@pytest.fixture(scope="module")
def checkpoint_env(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(checkpoint the process serves, RESNET_* variables to set): the default weights if present, else a tiny one."""
    if DEFAULT_WEIGHTS.exists():
        return DEFAULT_WEIGHTS, {}
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    make_checkpoint(path, ["circle", "square", "triangle"], spec=default_preprocess("resnet20"))
    return path, {"RESNET_CHECKPOINT": str(path)}


@pytest.fixture(scope="module")
def server(checkpoint_env, tmp_path_factory):
    """The CMD running; yields (base URL, process). Its output goes to a file, shown when a test fails."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESNET_")}  # only the image's defaults
    env.update(checkpoint_env[1])
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(image_command(port), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"the CMD exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
            try:
                if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready after {STARTUP_TIMEOUT_S}s:\n{log_path.read_text()[-4000:]}"
            time.sleep(0.5)
        yield base, proc, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def png_for(checkpoint) -> bytes:
    """A fixed noise image in the checkpoint's colour mode, a little larger than its input size."""
    spec = checkpoint.preprocess
    side = spec.resize + 8
    return image_bytes("PNG", size=(side, side), mode=spec.color_mode)


def reloads(base: str) -> float:
    """Successful reloads so far, from the service's Prometheus metrics."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.search(r'^resnet_model_reloads_total\{result="success"\} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


def test_image_healthcheck_and_compose_healthcheck_pass_when_ready(server):
    base, _, _ = server
    port = int(base.rsplit(":", 1)[1])
    compose_test = load_yaml(COMPOSE)["services"]["api"]["healthcheck"]["test"]
    for argv in (healthcheck_command(read_dockerfile()), compose_test[1:]):
        probe = subprocess.run(local_probe(argv, port), capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr


def test_image_healthcheck_fails_when_nothing_answers():
    probe = subprocess.run(local_probe(healthcheck_command(read_dockerfile()), free_port()), capture_output=True,
                           timeout=30)
    assert probe.returncode != 0


def test_predict_returns_what_the_checkpoint_predicts(server, checkpoint_env):
    base, _, _ = server
    checkpoint = load_checkpoint(checkpoint_env[0])
    data = png_for(checkpoint)
    with torch.inference_mode():
        probs = checkpoint.model(load_image_tensor(data, checkpoint.preprocess)[None]).softmax(1)[0]

    r = httpx.post(f"{base}/v1/predict", files={"file": ("probe.png", data, "image/png")}, timeout=60)
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == min(5, len(checkpoint.classes))
    assert [p["score"] for p in predictions] == sorted((p["score"] for p in predictions), reverse=True)
    for p in predictions:
        assert p["label"] == checkpoint.classes[p["index"]]
        assert p["score"] == pytest.approx(probs[p["index"]].item(), abs=1e-3)
    assert predictions[0]["score"] == pytest.approx(probs.max().item(), abs=1e-3)


def test_sighup_reloads_and_sigterm_stops_cleanly(server, checkpoint_env):
    """Last in this file: it ends the server."""
    base, proc, log_path = server
    assert reloads(base) == 0
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while reloads(base) < 1:
        assert proc.poll() is None, f"SIGHUP killed the server:\n{log_path.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no reload 60 s after SIGHUP:\n{log_path.read_text()[-4000:]}"
        time.sleep(0.5)
    ready = httpx.get(f"{base}/health/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["checkpoint_sha256"] == load_checkpoint(checkpoint_env[0]).sha256

    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 30 s after SIGTERM (docker stop would kill it):\n{log_path.read_text()[-4000:]}")
    # uvicorn re-raises SIGTERM once its graceful shutdown is done (status -15 here, 143 for the container).
    assert code in (0, -signal.SIGTERM), log_path.read_text()[-4000:]
    assert "Application shutdown complete" in log_path.read_text(), "the lifespan shutdown did not run"
