"""Triton's perf_analyzer against a live `resnet-serve`, over HTTP and gRPC, as a user runs it: no flags beyond a
short measurement. Zero errors: it exits 0 and the server's statistics count no failure."""

from __future__ import annotations

import httpx
import pytest

from devkit import perf_analyzer
from devkit.images import image_bytes

REASON = perf_analyzer.why_not_runnable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def _stats(server) -> dict[str, int]:
    stats = httpx.get(f"{server.http.url}/v2/models/resnet/stats", timeout=30).json()["model_stats"][0]
    return {k: stats["inference_stats"][k]["count"] for k in ("success", "fail")}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("data", ["generated", "images"])
def test_perf_analyzer_runs_with_zero_errors(grpc_server, tmp_path, protocol, data):
    url = grpc_server.grpc_url if protocol == "grpc" else grpc_server.http.url.removeprefix("http://")
    flags = [*perf_analyzer.QUICK]
    if data == "images":  # real files on `image`; generated data goes to `input` (random FP32)
        images = [image_bytes("PNG", seed=i) for i in range(3)] + [image_bytes("JPEG", seed=3)]
        flags += ["--input-data", str(perf_analyzer.image_input_data(tmp_path / "images.json", images))]
    before = _stats(grpc_server)
    out = perf_analyzer.run(url, protocol, *flags)
    assert out.returncode == 0, out.stdout + out.stderr
    after = _stats(grpc_server)
    assert after["fail"] == before["fail"], out.stdout
    assert after["success"] > before["success"]
    assert perf_analyzer.results(out.stdout)[1][0] > 0
    assert "Server:" in out.stdout and "compute infer" in out.stdout  # it read the statistics extension
