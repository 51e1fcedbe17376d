"""The api process dies (killed with SIGKILL, as by the OOM killer or a crash): the restart policy brings the
container back, ready again, also after the SIGHUP reloads of test_02.

Why not `docker kill`: for the engine that is a manual stop. Its kill path cancels the restart policy (ExitOnNext)
for SIGKILL, and for any signal when the image has no STOPSIGNAL, and marks the container "manually stopped", which
`unless-stopped` honours (moby/moby#47792). The image's STOPSIGNAL SIGTERM and compose's `restart: always` keep a
SIGHUP reload from turning the restart policy off; this test checks that too, since test_02 sent one."""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest

from tests.container.container_stack import docker, inspect, logs, record

pytestmark = pytest.mark.container


def test_api_process_killed_is_restarted_by_the_policy_and_ready_again(up):
    (api,) = up.containers()
    restarts = inspect(api)["RestartCount"]
    t0 = time.monotonic()
    # The server is the only child of the container's init (docker-init, `init: true`), which exits with its status.
    docker("exec", api, "sh", "-c", "kill -KILL $(cat /proc/1/task/1/children)")
    deadline = t0 + 300
    ready = False
    while not ready:
        assert time.monotonic() < deadline, f"not ready again after 300 s:\n{inspect(api)['State']}\n{logs(up)}"
        time.sleep(0.1)
        state = inspect(api)
        if state["RestartCount"] <= restarts or not state["State"]["Running"]:
            continue
        with contextlib.suppress(httpx.HTTPError, AssertionError, IndexError):
            ready = httpx.get(f"{up.api_url()}/health/ready", timeout=2).status_code == 200
    elapsed = time.monotonic() - t0
    state = inspect(api)
    assert up.containers() == [api], "the same container restarted, not a new one"
    assert state["RestartCount"] == restarts + 1
    record(f"api process SIGKILLed -> restarted by the policy ({state['HostConfig']['RestartPolicy']['Name']}) "
           f"and /health/ready 200: {elapsed:.1f} s")
