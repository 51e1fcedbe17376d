"""`docker compose down -v` leaves nothing of the project: no container, network or volume."""

from __future__ import annotations

import pytest

from tests.container.container_stack import docker

pytestmark = pytest.mark.container


def test_down_v_leaves_nothing_running(up):
    up.compose("--profile", "lb", "--profile", "train", "down", "-v", "--timeout", "40")
    label = f"label=com.docker.compose.project={up.project}"
    assert docker("ps", "-a", "-q", "--filter", label).stdout.strip() == ""
    assert docker("network", "ls", "-q", "--filter", label).stdout.strip() == ""
    assert docker("volume", "ls", "-q", "--filter", label).stdout.strip() == ""
    for cid in up.containers_seen:
        assert docker("inspect", cid, check=False).returncode != 0, f"container {cid} still exists"
