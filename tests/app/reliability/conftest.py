"""Fixtures: a tiny checkpoint, the hostile corpus, and real `resnet-serve` processes on loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.checkpoints import CLASSES, make_checkpoint
from devkit.server import Server, start_server
from tests.app.reliability.corpus import Sample, build_corpus
from tests.app.reliability.servers import SERVERS


@pytest.fixture(scope="session")
def classes() -> list[str]:
    return list(CLASSES)


@pytest.fixture(scope="session")
def reliability_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("reliability-ckpt") / "model.pt")


@pytest.fixture(scope="session")
def corpus() -> list[Sample]:
    return build_corpus()


@pytest.fixture(scope="session")
def servers(reliability_checkpoint, tmp_path_factory) -> Iterator[dict[str, Server]]:
    tmp = tmp_path_factory.mktemp("reliability-servers")
    started = {name: start_server(tmp, checkpoint=reliability_checkpoint, **settings)
               for name, settings in SERVERS.items()}
    try:
        for srv in started.values():
            srv.wait_ready()
        yield started
    finally:
        for srv in started.values():
            srv.stop()


@pytest.fixture(scope="session")
def default_server(servers) -> Server:
    return servers["default"]


@pytest.fixture(scope="session")
def impatient_server(servers) -> Server:
    return servers["impatient"]


@pytest.fixture(scope="session")
def small_queue_server(servers) -> Server:
    return servers["small_queue"]
