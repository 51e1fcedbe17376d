"""Protocol abuse against a real server: wrong forms, bad parameters, huge and slow bodies, abandoned uploads."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from app.core.config import Settings
from devkit.asgi import serve
from devkit.images import image_bytes
from devkit.waiting import wait_for
from tests.app.reliability.servers import (
    MIB,
    PeakRss,
    assert_error,
    assert_sane_predictions,
    labelled_count,
    metric,
    open_files,
)

pytestmark = pytest.mark.slow
PNG = image_bytes("PNG")
HUGE = 80 * MIB


def _post(url: str, path: str = "/v1/predict", **kwargs) -> httpx.Response:
    return httpx.post(f"{url}{path}", timeout=120, **kwargs)


@pytest.mark.parametrize("files", [
    {"image": ("x.png", PNG, "image/png")},  # wrong field name
    {"note": (None, b"no file here")},  # a multipart form without any file
])
def test_a_form_without_the_file_field_is_422(default_server, files):
    assert_error(_post(default_server.url, files=files), 422, "missing_file")


def test_a_json_body_is_415(default_server):
    assert_error(_post(default_server.url, json={"file": "aGVsbG8="}), 415, "unsupported_media_type")


@pytest.mark.parametrize("top_k", ["0", "-1", "abc", "1.5"])
def test_bad_top_k_is_422(default_server, top_k):
    r = _post(default_server.url, params={"top_k": top_k}, files={"file": ("x.png", PNG, "image/png")})
    assert_error(r, 422, "invalid_request")


def test_top_k_above_the_class_count_is_clamped(default_server, classes):
    r = _post(default_server.url, params={"top_k": 10**9}, files={"file": ("x.png", PNG, "image/png")})
    assert r.status_code == 200
    assert_sane_predictions(r.json()["predictions"], classes)


def _zeros(total: int, chunk: int = MIB):
    block = b"\x00" * chunk
    for _ in range(total // chunk):
        yield block


def _multipart_zeros(total: int):
    yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n' \
          b"Content-Type: image/png\r\n\r\n"
    yield from _zeros(total)
    yield b"\r\n--xyz--\r\n"


@pytest.mark.parametrize(("content_type", "body", "declared"), [
    ("image/png", _zeros, True),  # Content-Length says 80 MiB: refused before a byte is read
    ("image/png", _zeros, False),  # chunked: cut off once past the limit
    ("multipart/form-data; boundary=xyz", _multipart_zeros, False),  # chunked multipart: same, no spooling
], ids=["raw-with-length", "raw-chunked", "multipart-chunked"])
def test_an_80_mib_body_is_413_and_never_held_whole(default_server, content_type, body, declared):
    headers = {"Content-Type": content_type}
    if declared:
        headers["Content-Length"] = str(HUGE)
    with PeakRss(default_server.proc.pid).watch() as rss:
        r = _post(default_server.url, content=body(HUGE), headers=headers)
    assert_error(r, 413, "payload_too_large")
    assert rss.growth < 40, f"server RSS grew {rss.growth:.0f} MiB while an 80 MiB body came in"


def test_too_many_files_in_a_batch_is_422(default_server):
    files = [("files", (f"{i}.png", PNG, "image/png")) for i in range(33)]  # the default limit is 32
    assert_error(_post(default_server.url, "/v1/predict/batch", files=files), 422, "too_many_files")


def test_a_huge_reload_body_is_413(default_server):
    body = json.dumps({"checkpoint": "x" * (200 * 1024)}).encode()
    r = _post(default_server.url, "/v1/model/reload", content=iter([body]),
              headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_reload_is_off_in_a_default_deployment(default_server):
    r = _post(default_server.url, "/v1/model/reload", json={"checkpoint": "/etc/passwd"})
    assert_error(r, 403, "reload_disabled")


@pytest.mark.parametrize("path", [".", "/", "x" * 300 + "/model.pt", "/dev/zero", "model\x00.pt", "..",
                                  "/etc/passwd", "../../../../../../etc/shadow"])
@pytest.mark.anyio
async def test_odd_reload_paths_are_refused_and_the_model_keeps_serving(reliability_checkpoint, path):
    settings = Settings(checkpoint=reliability_checkpoint, device="cpu", backend="torch", api_key="k",
                        log_level="warning")
    async with serve(settings, {"X-API-Key": "k"}) as (_, client):
        before = (await client.get("/v1/model")).json()["checkpoint_sha256"]
        r = await client.post("/v1/model/reload", json={"checkpoint": path})
        assert r.status_code in (403, 422), r.text
        assert r.json()["error"]["code"] in ("invalid_checkpoint", "invalid_request", "forbidden_path"), r.text
        assert (await client.get("/v1/model")).json()["checkpoint_sha256"] == before


# --- slow and abandoned uploads --------------------------------------------------------------------------------

def _start_upload(port: int, multipart: bool, sent: int, total: int) -> socket.socket:
    """Send the headers and the first `sent` of `total` body bytes, then stop (a slow or vanished client)."""
    if multipart:
        head = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
                b"Content-Type: image/png\r\n\r\n")
        content_type, body = b"multipart/form-data; boundary=xyz", head + b"\x00" * (sent - len(head))
    else:
        content_type, body = b"image/png", b"\x00" * sent
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + content_type
                 + b"\r\nContent-Length: " + str(total).encode() + b"\r\n\r\n" + body)
    return sock


def _read_until_closed(sock: socket.socket, timeout: float = 60) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _idle(url: str, pid: int, baseline: list[str]) -> bool:
    """Nothing in flight, and no descriptor (socket, spooled temp file) beyond those open before."""
    now = open_files(pid)
    spooled = [f for f in now if "(deleted)" in f]
    return metric(url, "resnet_in_flight_requests") == 0 and len(now) <= len(baseline) and len(spooled) <= len(
        [f for f in baseline if "(deleted)" in f])


@pytest.mark.parametrize("multipart", [False, True], ids=["raw", "multipart"])
def test_a_slow_client_gets_408_and_everything_is_freed(impatient_server, multipart):
    srv, pid = impatient_server, impatient_server.proc.pid
    baseline = open_files(pid)
    # 2 MiB of a 5 MiB body: a multipart file that size is already spooled to a temp file on disk.
    sock = _start_upload(srv.port, multipart, sent=2 * MIB, total=5 * MIB)
    try:
        response = _read_until_closed(sock)  # the server answers at its 2 s deadline, then closes
    finally:
        sock.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == {"code": "upload_timeout",
                                         "message": "the request body did not arrive within 2 s"}
    wait_for(lambda: _idle(srv.url, pid, baseline), what="the slow upload's resources to be freed")
    assert httpx.get(f"{srv.url}/health/ready", timeout=30).status_code == 200


def test_abandoned_uploads_are_dropped_and_everything_is_freed(default_server):
    srv, pid = default_server, default_server.proc.pid  # its 30 s deadline is far: the clients hang up first
    baseline = open_files(pid)
    gone_before = labelled_count(srv.url, "resnet_requests_total", status="499")
    socks = [_start_upload(srv.port, multipart, sent=2 * MIB, total=5 * MIB) for multipart in (False, True)]
    wait_for(lambda: metric(srv.url, "resnet_in_flight_requests") == 2, what="both uploads to be admitted")
    for sock in socks:
        sock.close()  # the client vanishes mid-body
    wait_for(lambda: _idle(srv.url, pid, baseline), what="the abandoned uploads' resources to be freed")
    assert labelled_count(srv.url, "resnet_requests_total", status="499") == gone_before + 2
    assert "Traceback" not in srv.output()
    r = _post(srv.url, files={"file": ("x.png", PNG, "image/png")})
    assert r.status_code == 200
