"""gRPC shares HTTP's guards: the API key, admission (overload), readiness, the request deadline and a message size
limit. In-process apps (lifespan running, gRPC on a free loopback port) and tritonclient's asyncio gRPC client."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import InferInput
from tritonclient.utils import InferenceServerException

from app.core.admission import Admission
from app.core.metrics import ServiceMetrics
from app.grpc.server import max_message_bytes, start_grpc
from app.services.oip_stats import ModelStats
from devkit.asgi import serve
from devkit.images import image_bytes

pytestmark = pytest.mark.anyio
MODEL = "resnet"
PNG = image_bytes("PNG")


def _image(data: bytes = PNG) -> InferInput:
    inp = InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([data], dtype=np.object_))
    return inp


def _url(settings) -> str:
    return f"{settings.host}:{settings.grpc_port}"


async def _status(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as exc:
        await call
    return exc.value.status(), exc.value.message()


async def test_api_key_is_required_on_infer_only(grpc_settings):
    settings = grpc_settings(api_key="s3cret")
    async with serve(settings), triton_aio.InferenceServerClient(_url(settings)) as client:
        assert await client.is_server_ready()  # health and metadata stay open, as on HTTP
        code, message = await _status(client.infer(MODEL, [_image()]))
        assert code == "StatusCode.UNAUTHENTICATED" and "API key" in message
        code, _ = await _status(client.infer(MODEL, [_image()], headers={"x-api-key": "wrong"}))
        assert code == "StatusCode.UNAUTHENTICATED"
        result = await client.infer(MODEL, [_image()], headers={"x-api-key": "s3cret"})
        assert result.as_numpy("probabilities").shape == (1, 3)


async def test_overload_is_resource_exhausted_with_the_retry_hint(grpc_settings):
    settings = grpc_settings(queue_size=1, max_batch_size=1)
    async with serve(settings) as (app, _):
        admission = app.state.admission  # the one HTTP's requests hold: fill it as they would
        with contextlib.ExitStack() as held:
            for _ in range(admission.limit):
                held.enter_context(admission.slot())
            async with grpc.aio.insecure_channel(_url(settings)) as channel:
                from tritonclient.grpc import service_pb2, service_pb2_grpc

                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                request = service_pb2.ModelInferRequest(model_name=MODEL)
                request.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.append(PNG)
                call = stub.ModelInfer(request, timeout=30)
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await call
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in exc.value.details() and "retry after 1 s" in exc.value.details()
        assert ("retry-after", "1") in tuple(exc.value.trailing_metadata())
        async with triton_aio.InferenceServerClient(_url(settings)) as client:  # slots free again: served
            assert (await client.infer(MODEL, [_image()])).as_numpy("probabilities").shape == (1, 3)


async def test_not_ready_is_unavailable_and_health_not_serving(grpc_settings):
    """gRPC listens before the model is in (the lifespan starts it first): no service yet -> UNAVAILABLE."""
    settings = grpc_settings()
    state = SimpleNamespace(settings=settings, admission=Admission(4), metrics=ServiceMetrics(),
                            oip_stats=ModelStats(), service=None)
    server = await start_grpc(state)
    try:
        async with triton_aio.InferenceServerClient(_url(settings)) as client:
            assert await client.is_server_live() and not await client.is_server_ready()
            code, message = await _status(client.infer(MODEL, [_image()]))
            assert code == "StatusCode.UNAVAILABLE" and "not loaded" in message
        async with grpc.aio.insecure_channel(_url(settings)) as channel:
            check = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await server.stop(0)


def slow_model(app, monkeypatch, gate: threading.Event) -> None:
    """The served model's forward passes wait for `gate` (on the inference thread)."""
    backend = app.state.service.manager.model().backend
    predict = backend.predict

    def gated(batch):
        gate.wait(30)
        return predict(batch)

    monkeypatch.setattr(backend, "predict", gated)


def _zeros() -> InferInput:
    batch = InferInput("input", [1, 3, 32, 32], "FP32")
    batch.set_data_from_numpy(np.zeros((1, 3, 32, 32), np.float32))
    return batch


async def test_the_deadline_is_the_calls_or_the_request_timeout(grpc_settings, monkeypatch):
    gate = threading.Event()
    settings = grpc_settings(request_timeout_s=0.3)
    async with serve(settings) as (app, _), triton_aio.InferenceServerClient(_url(settings)) as client:
        slow_model(app, monkeypatch, gate)
        start = time.monotonic()
        code, message = await _status(client.infer(MODEL, [_zeros()]))
        assert code == "StatusCode.DEADLINE_EXCEEDED" and "0.3 s" in message  # RESNET_REQUEST_TIMEOUT_S
        assert time.monotonic() - start < 5
        gate.set()
    gate.clear()
    settings = grpc_settings(request_timeout_s=30)
    async with serve(settings) as (app, _), triton_aio.InferenceServerClient(_url(settings)) as client:
        slow_model(app, monkeypatch, gate)
        code, _ = await _status(client.infer(MODEL, [_zeros()], client_timeout=0.3))  # the call's own deadline
        assert code == "StatusCode.DEADLINE_EXCEEDED"
        gate.set()


async def test_message_size_limit(grpc_settings):
    settings = grpc_settings(grpc_max_message_bytes=16384)
    assert max_message_bytes(settings) == 16384
    assert max_message_bytes(grpc_settings(max_upload_bytes=1000, max_batch_files=4)) == 4000 + (1 << 20)
    async with serve(settings), triton_aio.InferenceServerClient(_url(settings)) as client:
        code, message = await _status(client.infer(MODEL, [_image(PNG + b"\0" * 20000)]))
        assert code == "StatusCode.RESOURCE_EXHAUSTED" and "16384" in message
        assert (await client.infer(MODEL, [_image()])).as_numpy("probabilities").shape == (1, 3)


async def test_image_over_the_upload_limit_is_invalid_argument(grpc_settings):
    settings = grpc_settings(max_upload_bytes=100)
    async with serve(settings), triton_aio.InferenceServerClient(_url(settings)) as client:
        code, message = await _status(client.infer(MODEL, [_image()]))
        assert code == "StatusCode.INVALID_ARGUMENT" and "element 0" in message and "100 bytes" in message


async def test_shutdown_drains_running_calls(grpc_settings, monkeypatch):
    gate = threading.Event()
    settings = grpc_settings()
    async with triton_aio.InferenceServerClient(_url(settings)) as client:
        async with serve(settings) as (app, _):
            slow_model(app, monkeypatch, gate)
            running = asyncio.create_task(client.infer(MODEL, [_zeros()]))
            end = time.monotonic() + 10
            while app.state.admission.in_flight < 1:  # admitted: running when shutdown begins
                assert time.monotonic() < end and not running.done()
                await asyncio.sleep(0.01)
            asyncio.get_running_loop().call_later(0.5, gate.set)
            shutdown_began = time.monotonic()
        # the lifespan's shutdown waited for the call, which got its answer
        assert time.monotonic() - shutdown_began >= 0.4
        # (the answer was sent during the drain; the client's task may need a moment to take it in)
        assert (await asyncio.wait_for(running, 5)).as_numpy("probabilities").shape == (1, 3)
        code, _ = await _status(client.infer(MODEL, [_zeros()]))
        assert code == "StatusCode.UNAVAILABLE"  # nobody listens any more
