"""A real service process on a loopback port: `resnet-serve` or `uvicorn app.main:app`, stopped with SIGTERM.

Nothing here imports torch or the app, so the benchmarks can start servers with it cheaply."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**settings: object) -> dict[str, str]:
    """This environment without RESNET_* variables, plus CPU/torch defaults and `settings` as RESNET_<NAME>."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESNET_")}
    env.update({"PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "RESNET_DEVICE": "cpu", "RESNET_BACKEND": "torch",
                "RESNET_TORCH_THREADS": "1", "RESNET_DECODE_THREADS": "2", "RESNET_LOG_LEVEL": "info",
                "RESNET_GRPC_PORT": "0"})  # gRPC only where asked (grpc_port=free_port()): 8001 may be taken
    env.update({f"RESNET_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class Server:
    """A service process on a loopback port; `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, log_path: Path, *, cwd: Path = REPO,
                 ready_path: str = "/health/ready") -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120, poll: float = 0.2) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200:
                    return
            time.sleep(poll)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def start_server(tmp: Path, module: str = "cli", **settings: object) -> Server:
    """`resnet-serve` (module="cli") or `uvicorn app.main:app` (module="uvicorn") with the given settings."""
    port = free_port()
    if module == "cli":
        args = [sys.executable, "-m", "app.cli", "--host", "127.0.0.1", "--port", str(port)]
    else:
        args = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    return Server(args, server_env(**settings), port, tmp / f"server-{port}.log")
