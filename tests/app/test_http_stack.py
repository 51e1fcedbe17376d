"""Both HTTP stacks uvicorn can run the service on: asyncio + h11 and uvloop + httptools, which `resnet-serve` picks
now that the serving install has uvicorn[standard]. Same answers, same errors, same body limits over the wire."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devkit.images import image_bytes
from devkit.server import Server, free_port, server_env

pytestmark = pytest.mark.slow
STACKS = {"asyncio+h11": ("asyncio", "h11"), "uvloop+httptools": ("uvloop", "httptools")}  # --loop, --http
LIMIT = 64 * 1024  # RESNET_MAX_UPLOAD_BYTES of the servers here


def mapped_libraries(pid: int) -> set[str]:
    """Which of uvloop and httptools process `pid` has loaded: the stack it really runs on."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {lib for lib in ("uvloop", "httptools") if f"/{lib}/" in maps}


@pytest.fixture(scope="module", params=list(STACKS))
def stack_server(request, checkpoint, tmp_path_factory) -> Iterator[tuple[str, Server]]:
    """The app factory under `uvicorn --loop L --http H`, as app/cli.py runs it otherwise."""
    loop, http = STACKS[request.param]
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--lifespan", "on", "--loop", loop, "--http", http]
    tmp = tmp_path_factory.mktemp(request.param)
    srv = Server(args, server_env(checkpoint=checkpoint, max_upload_bytes=LIMIT, max_batch_delay_ms=2), port,
                 tmp / "server.log")
    try:
        srv.wait_ready()
        yield request.param, srv
    finally:
        code = srv.stop()
    assert code in (0, -signal.SIGTERM), srv.output()


def test_resnet_serve_runs_on_uvloop_and_httptools(server):
    assert mapped_libraries(server.proc.pid) == {"uvloop", "httptools"}


def test_each_server_runs_the_stack_it_was_given(stack_server):
    name, srv = stack_server
    assert mapped_libraries(srv.proc.pid) == ({"uvloop", "httptools"} if name == "uvloop+httptools" else set())


def test_multipart_raw_and_chunked_bodies_get_the_same_answer(stack_server):
    _, srv = stack_server
    data = image_bytes("JPEG", seed=3)
    url = f"{srv.url}/v1/predict"
    multipart = httpx.post(url, files={"file": ("x.jpg", data, "image/jpeg")})
    raw = httpx.post(url, content=data, headers={"Content-Type": "image/jpeg"})
    chunked = httpx.post(url, content=iter([data[:100], data[100:]]), headers={"Content-Type": "image/jpeg"})
    assert [r.status_code for r in (multipart, raw, chunked)] == [200, 200, 200]
    assert multipart.json()["predictions"] == raw.json()["predictions"] == chunked.json()["predictions"]


def test_errors_keep_their_shape(stack_server):
    _, srv = stack_server
    r = httpx.post(f"{srv.url}/v1/predict", content=b"x" * 10, headers={"Content-Type": "text/csv"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = httpx.post(f"{srv.url}/v1/predict", content=b"not an image", headers={"Content-Type": "image/png"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image"


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_413(stack_server, chunked):
    _, srv = stack_server
    body = b"\x00" * (LIMIT + 1)
    content = iter([body[:LIMIT], body[LIMIT:]]) if chunked else body
    r = httpx.post(f"{srv.url}/v1/predict", content=content, headers={"Content-Type": "image/png"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_one_keep_alive_connection_serves_many_requests(stack_server):
    _, srv = stack_server
    data = image_bytes("PNG", seed=4)
    with httpx.Client(base_url=srv.url, limits=httpx.Limits(max_connections=1)) as client:
        codes = [client.post("/v1/predict", content=data, headers={"Content-Type": "image/png"}).status_code
                 for _ in range(20)]
        request_id = client.get("/health/live", headers={"X-Request-ID": "stack-1"}).headers["x-request-id"]
    assert codes == [200] * 20 and request_id == "stack-1"
