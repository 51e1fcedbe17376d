"""The compose stack on a real Docker engine (helpers; the fixtures are in conftest.py): one compose project for
the whole session, removed at the end.

scripts/test-container.sh builds the images and runs these tests (`pytest -m container tests/container`); it passes:
  RESNET_CT_IMAGE     the project image it built (compose's IMAGE)
  RESNET_CT_LB_IMAGE  the load balancer image (compose's LB_IMAGE; nginx from Debian's packages)
  RESNET_CT_PROJECT   the compose project name (the script removes whatever carries it at exit)
  RESNET_CT_RECORD    a file the measurements are appended to (memory, start-to-ready, restart time)
The tests run in file order (test_01 ... test_05): the train/reload, restart and scale steps change the stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from tests.training.tinydata import CLASSES, TINY_ARGS, make_image_folder

REPO = Path(__file__).resolve().parents[2]

__all__ = ["CLASSES", "TINY_ARGS"]
EXAMPLES = sorted((REPO / "examples").glob("*.png"))
COMPOSE_FILE = REPO / "docker-compose.yml"
READY_TIMEOUT_S = 300


def need_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the container tests through scripts/test-container.sh", pytrace=False)
    return value


def record(line: str) -> None:
    """One measurement, printed and appended to the record file (numbers are recorded, never asserted as speed)."""
    print(f"[record] {line}")
    path = os.environ.get("RESNET_CT_RECORD")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def free_port_range(n: int) -> tuple[int, int]:
    """n consecutive loopback ports that are free now."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + n > 65000:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + n):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("0.0.0.0", port))
            return first, first + n - 1
        except OSError:
            continue
    raise RuntimeError(f"no {n} consecutive free ports")


def docker(*args: str, check: bool = True, timeout: float = 600, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container).stdout)[0]


def started_at(container: str) -> float:
    """State.StartedAt as a Unix time (Docker writes nanoseconds; Python parses microseconds)."""
    stamp = inspect(container)["State"]["StartedAt"]
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def memory_mib(container: str) -> float:
    """`docker stats` memory use of a container, in MiB."""
    usage = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container).stdout.split("/")[0].strip()
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "kB": 1 / 1024, "MiB": 1, "MB": 1, "GiB": 1024, "GB": 1024}
    for unit in sorted(units, key=len, reverse=True):
        if usage.endswith(unit):
            return float(usage[: -len(unit)]) * units[unit]
    raise AssertionError(f"cannot parse docker stats memory {usage!r}")


@dataclass
class Stack:
    """`docker compose` on docker-compose.yml with this session's project, image and ports."""

    project: str
    env: dict[str, str]
    workdir: Path
    containers_seen: set[str] = field(default_factory=set)

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return docker("compose", "--project-name", self.project, "--env-file", str(self.workdir / "empty.env"),
                      "-f", str(COMPOSE_FILE), *args, check=check, timeout=timeout, env=self.env)

    def containers(self, service: str = "api") -> list[str]:
        """Running containers of a service, in replica order."""
        ids = self.compose("ps", "-q", service).stdout.split()
        self.containers_seen.update(ids)
        return ids

    def api_url(self, index: int = 1) -> str:
        """The api replica's published port (a host port from the API_PORT range, which can change on restart)."""
        out = self.compose("port", "--index", str(index), "api", "8000").stdout.strip()
        return f"http://127.0.0.1:{out.rsplit(':', 1)[1]}"

    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.env['LB_PORT']}"


def make_imagefolder(root: Path) -> Path:
    """The training tests' tiny ImageFolder (tests/training/tinydata.py), readable by the container's user."""
    make_image_folder(root, train=6, val=2)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def logs(stack: Stack, service: str = "api") -> str:
    return stack.compose("logs", "--no-color", "--tail", "80", service, check=False).stdout[-6000:]
