"""`docker kill` of the api container: the restart policy (unless-stopped) brings it back, ready again."""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest
from container_stack import docker, inspect, logs, record

pytestmark = pytest.mark.container


def test_killed_api_is_restarted_and_ready_again(up):
    (api,) = up.containers()
    restarts = inspect(api)["RestartCount"]
    t0 = time.monotonic()
    docker("kill", api)
    deadline = t0 + 300
    ready = False
    while not ready:
        assert time.monotonic() < deadline, f"not ready again after 300 s:\n{logs(up)}"
        time.sleep(0.1)
        state = inspect(api)
        if state["RestartCount"] <= restarts or not state["State"]["Running"]:
            continue
        with contextlib.suppress(httpx.HTTPError, AssertionError, IndexError):
            ready = httpx.get(f"{up.api_url()}/health/ready", timeout=2).status_code == 200
    elapsed = time.monotonic() - t0
    assert up.containers() == [api], "the same container restarted, not a new one"
    assert inspect(api)["RestartCount"] == restarts + 1
    record(f"docker kill -> restarted by the policy and /health/ready 200: {elapsed:.1f} s")
