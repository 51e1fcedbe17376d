"""A real uvicorn server on a loopback port: the HTTP contract end to end, batching, SIGHUP reload."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from devkit.checkpoints import make_checkpoint
from devkit.images import image_bytes
from devkit.server import start_server

pytestmark = pytest.mark.slow


def test_raw_body_like_curl_data_binary(server):
    data = image_bytes("JPEG", seed=11)
    r = httpx.post(f"{server.url}/v1/predict?top_k=2", content=data, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200
    assert len(r.json()["predictions"]) == 2


def test_multipart_and_raw_agree(server):
    data = image_bytes("PNG", seed=12)
    a = httpx.post(f"{server.url}/v1/predict", files={"file": ("x.png", data, "image/png")}).json()
    b = httpx.post(f"{server.url}/v1/predict", content=data, headers={"Content-Type": "image/png"}).json()
    assert a["predictions"] == b["predictions"]


def test_batch_endpoint(server):
    files = [("files", ("a.png", image_bytes("PNG", seed=1), "image/png")),
             ("files", ("b.txt", b"hello", "text/plain"))]
    results = httpx.post(f"{server.url}/v1/predict/batch", files=files).json()["results"]
    assert results[0]["predictions"] and results[1]["error"]["code"] == "invalid_image"


def test_errors_keep_their_shape_over_the_wire(server):
    r = httpx.post(f"{server.url}/v1/predict", content=b"x" * 10, headers={"Content-Type": "text/csv"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = httpx.post(f"{server.url}/v1/predict?top_k=0", content=image_bytes(), headers={"Content-Type": "image/png"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_request_id_and_access_log(server):
    r = httpx.get(f"{server.url}/health/live", headers={"X-Request-ID": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42"
    deadline = time.monotonic() + 10
    while '"request_id": "trace-42"' not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
    line = next(x for x in server.output().splitlines() if '"request_id": "trace-42"' in x)
    assert '"logger": "app.access"' in line and '"status": 200' in line and '"path": "/health/live"' in line


def test_metrics_over_http(server):
    httpx.post(f"{server.url}/v1/predict", content=image_bytes(), headers={"Content-Type": "image/png"})
    text = httpx.get(f"{server.url}/metrics").text
    assert re.search(r'resnet_requests_total\{endpoint="/v1/predict",method="POST",status="200"\} [1-9]', text)
    assert 'resnet_model_info{arch="resnet20",backend="torch"' in text


@pytest.fixture(scope="module")
def hup_server(tmp_path_factory):
    """`uvicorn app.main:app` on its own checkpoint file, batching 8 requests within 5 s."""
    tmp = tmp_path_factory.mktemp("hup")
    path = make_checkpoint(tmp / "model.pt")
    srv = start_server(tmp, module="uvicorn", checkpoint=path, max_batch_size=8, max_batch_delay_ms=5000)
    try:
        srv.wait_ready()
        yield srv, path
    finally:
        srv.stop()


def _sha(url: str) -> str:
    return httpx.get(f"{url}/v1/model").json()["checkpoint_sha256"]


def _forward_passes(url: str) -> float:
    match = re.search(r"^resnet_batch_size_count (\S+)$", httpx.get(f"{url}/metrics").text, re.M)
    return float(match.group(1)) if match else 0.0


def test_concurrent_requests_share_forward_passes(hup_server):
    srv, _ = hup_server
    before = _forward_passes(srv.url)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: httpx.post(f"{srv.url}/v1/predict", content=image_bytes(seed=i), timeout=60,
                                                   headers={"Content-Type": "image/png"}).status_code, range(8)))
    assert codes == [200] * 8
    assert _forward_passes(srv.url) - before < 8


def test_sighup_reloads_the_checkpoint_and_a_bad_one_is_refused(hup_server):
    srv, path = hup_server
    old = _sha(srv.url)
    make_checkpoint(path, seed=5)  # a new file at the configured path
    os.kill(srv.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 60
    while _sha(srv.url) == old:
        assert time.monotonic() < deadline, srv.output()
        time.sleep(0.1)
    new = _sha(srv.url)

    path.write_bytes(b"garbage")
    os.kill(srv.proc.pid, signal.SIGHUP)
    while "reload failed, still serving the previous model" not in srv.output():
        assert time.monotonic() < deadline, srv.output()
        time.sleep(0.1)
    assert _sha(srv.url) == new
    assert httpx.get(f"{srv.url}/health/ready").status_code == 200
    assert srv.proc.poll() is None
