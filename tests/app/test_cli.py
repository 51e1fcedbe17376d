"""`resnet-serve` (app/cli.py): startup failures exit non-zero with one clear line; flags reach uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app import cli
from devkit.server import REPO, server_env

pytestmark = pytest.mark.slow


def _serve(tmp_path, **settings) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "app.cli", "--host", "127.0.0.1", "--port", "0"]
    return subprocess.run(args, cwd=REPO, env=server_env(**settings), capture_output=True, text=True, timeout=120)


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "startup failed:" in line]


def test_missing_checkpoint_stops_startup(tmp_path):
    proc = _serve(tmp_path, checkpoint=tmp_path / "missing.pt")
    assert proc.returncode != 0
    lines = _error_lines(proc)
    assert len(lines) == 1 and f"{tmp_path / 'missing.pt'}: checkpoint file not found" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_corrupt_checkpoint_stops_startup(tmp_path, checkpoint):
    bad = tmp_path / "model.pt"
    bad.write_bytes(checkpoint.read_bytes()[:5000])
    proc = _serve(tmp_path, checkpoint=bad)
    assert proc.returncode != 0
    lines = _error_lines(proc)
    assert len(lines) == 1 and "not a readable PyTorch checkpoint" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_cuda_requested_without_a_gpu_stops_startup(checkpoint, tmp_path):
    proc = _serve(tmp_path, checkpoint=checkpoint, device="cuda")  # server_env hides every GPU
    assert proc.returncode != 0
    lines = _error_lines(proc)
    assert len(lines) == 1 and "RESNET_DEVICE=cuda but CUDA is not available on this machine" in lines[0]


def test_invalid_settings_stop_startup(checkpoint, tmp_path):
    proc = _serve(tmp_path, checkpoint=checkpoint, device="gpu")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("resnet-serve: invalid settings: RESNET_DEVICE: Value error, must be auto, cpu, "
                                   "cuda or cuda:N")


def test_explicit_onnxruntime_that_cannot_start_stops_startup(checkpoint, tmp_path):
    stale = tmp_path / "x.onnx"
    stale.write_bytes(b"junk")
    proc = _serve(tmp_path, checkpoint=checkpoint, backend="onnxruntime", onnx_path=stale)
    assert proc.returncode != 0
    assert len(_error_lines(proc)) == 1 and "not a readable ONNX model" in _error_lines(proc)[0]


def test_several_workers_check_the_checkpoint_before_forking(tmp_path):
    args = [sys.executable, "-m", "app.cli", "--port", "0", "--workers", "2"]
    env = server_env(checkpoint=tmp_path / "missing.pt")
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"resnet-serve: startup failed: {tmp_path / 'missing.pt'}: checkpoint file not found"


def test_flags_override_settings(monkeypatch):
    calls = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.update(app=app, **kw))
    monkeypatch.setenv("RESNET_PORT", "1234")
    monkeypatch.setenv("RESNET_WORKERS", "1")
    assert cli.main(["--host", "127.0.0.9", "--port", "4321"]) == 0
    settings = calls["app"].state.settings  # the app itself, built from the settings with the flags in them
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.9", 4321, 1)
    assert os.environ["RESNET_PORT"] == "1234"  # flags reach the app as settings, not through the environment
    assert (calls["host"], calls["port"], calls["workers"]) == ("127.0.0.9", 4321, 1)
    assert calls["access_log"] is False  # the app writes its own access log
