"""`resnet-serve --workers 2`: every worker serves gRPC on the same port (SO_REUSEPORT), clients on separate
connections are all answered, and the supervisor's shutdown drains and stops gRPC in each worker."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
import tritonclient.grpc as triton

from devkit.images import image_bytes
from tests.app.grpc.conftest import start_grpc_server

pytestmark = pytest.mark.slow
BOUND = '"message": "gRPC on 127.0.0.1:'
READY = '"message": "ready: '


def wait_for_binds(server, count: int, timeout: float = 120) -> None:
    """Ready answers once one worker is up; wait until `count` workers listen for gRPC and serve their model (a
    worker binds gRPC before its model is in, and answers ServerReady false until then)."""
    end = time.monotonic() + timeout
    while min(server.http.output().count(BOUND), server.http.output().count(READY)) < count:
        assert time.monotonic() < end, server.http.output()
        time.sleep(0.3)


def test_two_workers_share_the_grpc_port(checkpoint, tmp_path):
    server = start_grpc_server(tmp_path, checkpoint=checkpoint, workers=2)
    try:
        wait_for_binds(server, 2)
        inp = triton.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([image_bytes("PNG")], dtype=np.object_))
        answers = []
        for _ in range(8):  # a new connection each time: the kernel spreads them over the workers
            client = triton.InferenceServerClient(server.grpc_url)
            assert client.is_server_ready()
            answers.append(client.infer("resnet", [inp]).as_numpy("probabilities"))
            client.close()
        assert all(np.allclose(a, answers[0], atol=1e-6) for a in answers)
        assert server.http.output().count(BOUND) == 2  # one bind per worker, no startup failure
        assert "startup failed" not in server.http.output()
    finally:
        code = server.http.stop()
    assert code in (0, -signal.SIGTERM), server.http.output()
    assert server.http.output().count('"message": "gRPC stopped"') == 2
