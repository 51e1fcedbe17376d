"""`inference.GRPCInferenceService` with Triton's own gRPC client (`tritonclient.grpc`) against a live
`resnet-serve`: the answers equal `/v2` over HTTP for the same images, errors come as gRPC status codes."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from devkit.images import image_bytes
from models import load_checkpoint, load_image_tensor

MODEL = "resnet"
IMAGES = [image_bytes("PNG", seed=i) for i in range(3)]


@pytest.fixture(scope="module")
def client(grpc_server):
    c = triton.InferenceServerClient(grpc_server.grpc_url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def http_probabilities(grpc_server) -> np.ndarray:
    """The same images through REST /v2 (tritonclient.http): the reference."""
    import tritonclient.http as triton_http

    c = triton_http.InferenceServerClient(grpc_server.http.url.removeprefix("http://"))
    inp = triton_http.InferInput("image", [len(IMAGES)], "BYTES")
    inp.set_data_from_numpy(np.array(IMAGES, dtype=np.object_))
    return c.infer(MODEL, [inp]).as_numpy("probabilities")


def _images(images: list[bytes]) -> triton.InferInput:
    inp = triton.InferInput("image", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_))
    return inp


def test_health_metadata_and_config(client, checkpoint):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    ckpt = load_checkpoint(checkpoint)
    spec = ckpt.preprocess
    meta = client.get_model_metadata(MODEL, as_json=True)
    assert meta["name"] == MODEL and meta["versions"] == ["1"]
    shapes = {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]}
    assert shapes == {"image": ("BYTES", [-1, 1]), "input": ("FP32", [-1, spec.channels, spec.crop, spec.crop])}
    config = client.get_model_config(MODEL, as_json=True)["config"]
    assert config["name"] == MODEL and config["max_batch_size"] == 32  # RESNET_MAX_BATCH_FILES
    assert [(i["name"], i["data_type"], i.get("optional")) for i in config["input"]] == [
        ("image", "TYPE_STRING", True), ("input", "TYPE_FP32", True)]
    assert config["output"][0]["dims"] == [str(len(ckpt.classes))]  # int64 in protobuf's JSON: strings
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "50000"
    server = client.get_server_metadata(as_json=True)
    assert {"classification", "model_configuration", "statistics"} <= set(server["extensions"])


def test_bytes_batch_equals_http(client, http_probabilities):
    probs = client.infer(MODEL, [_images(IMAGES)]).as_numpy("probabilities")
    assert probs.shape == (len(IMAGES), 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, http_probabilities, atol=1e-5)


def test_fp32_input_and_typed_contents(client, checkpoint, grpc_server, http_probabilities):
    spec = load_checkpoint(checkpoint).preprocess
    batch = np.stack([load_image_tensor(d, spec).numpy() for d in IMAGES]).astype(np.float32)
    inp = triton.InferInput("input", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch)
    np.testing.assert_allclose(client.infer(MODEL, [inp]).as_numpy("probabilities"), http_probabilities, atol=1e-5)
    # typed contents (fp32_contents) instead of raw_input_contents, as KServe's own clients may send
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(batch.shape))
    tensor.contents.fp32_contents.extend(batch.flatten().tolist())
    with grpc.insecure_channel(grpc_server.grpc_url) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    probs = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(len(IMAGES), 3)
    np.testing.assert_allclose(probs, http_probabilities, atol=1e-5)


def test_classification_extension(client, checkpoint, http_probabilities):
    classes = load_checkpoint(checkpoint).classes
    out = triton.InferRequestedOutput("probabilities", class_count=2)
    labels = client.infer(MODEL, [_images(IMAGES)], outputs=[out]).as_numpy("probabilities")
    assert labels.shape == (len(IMAGES), 2)
    for row, expected in zip(labels, http_probabilities, strict=True):
        best = np.argsort(-expected)[:2].tolist()
        parsed = [v.decode().split(":") for v in row]
        assert [int(i) for _, i, _ in parsed] == best and [lab for _, _, lab in parsed] == [classes[i] for i in best]
        assert [float(s) for s, _, _ in parsed] == pytest.approx(expected[best].tolist(), abs=1e-5)


@pytest.mark.parametrize(("call", "code", "fragment"), [
    (lambda c: c.get_model_metadata("other"), "StatusCode.NOT_FOUND", "unknown model 'other'"),
    (lambda c: c.get_model_config(MODEL, "7"), "StatusCode.NOT_FOUND", "unknown version '7'"),
    (lambda c: c.infer("other", [_images(IMAGES[:1])]), "StatusCode.NOT_FOUND", "unknown model"),
    (lambda c: c.infer(MODEL, [_images([IMAGES[0], b"not an image"])]), "StatusCode.INVALID_ARGUMENT",
     "input 'image' element 1"),
    (lambda c: c.infer(MODEL, [triton.InferInput("pixels", [1], "FP32")]), "StatusCode.INVALID_ARGUMENT",
     "unknown input 'pixels'"),
    (lambda c: c.infer(MODEL, [_images(IMAGES[:1])], outputs=[triton.InferRequestedOutput("logits")]),
     "StatusCode.INVALID_ARGUMENT", "unknown output 'logits'"),
    (lambda c: c.infer(MODEL, [_images(IMAGES * 11)]), "StatusCode.INVALID_ARGUMENT", "1 to 32 items"),
])
def test_errors_are_status_codes_with_the_message(client, call, code, fragment):
    with pytest.raises(InferenceServerException) as exc:
        call(client)
    assert exc.value.status() == code and fragment in exc.value.message()


def test_unimplemented_rpcs_and_the_health_service(grpc_server, client):
    with pytest.raises(InferenceServerException) as exc:
        client.get_model_repository_index()
    assert exc.value.status() == "StatusCode.UNIMPLEMENTED"
    with grpc.insecure_channel(grpc_server.grpc_url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING


def test_request_id_statistics_metrics_and_access_log(grpc_server, client):
    with grpc.insecure_channel(grpc_server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ServerLive.with_call(service_pb2.ServerLiveRequest(), metadata=[("x-request-id", "abc-123")])
        assert ("x-request-id", "abc-123") in call.initial_metadata()
        _, call = stub.ServerLive.with_call(service_pb2.ServerLiveRequest())
        assert len(dict(call.initial_metadata())["x-request-id"]) == 32  # made up when the client sent none
    before = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    client.infer(MODEL, [_images(IMAGES[:2])])
    after = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    success = after["inference_stats"]["success"]
    assert int(success["count"]) == int(before["inference_stats"]["success"].get("count", 0)) + 1
    assert int(after["inference_count"]) == int(before.get("inference_count", 0)) + 2
    assert int(after["inference_stats"]["compute_infer"]["ns"]) > 0
    http_stats = httpx.get(f"{grpc_server.http.url}/v2/models/{MODEL}/stats").json()["model_stats"][0]
    assert http_stats["inference_stats"]["success"]["count"] >= int(success["count"])  # one object, both transports
    metrics = httpx.get(f"{grpc_server.http.url}/metrics").text
    assert 'resnet_requests_total{endpoint="grpc:ModelInfer",method="GRPC",status="OK"}' in metrics
    assert '"request_id": "abc-123"' in grpc_server.http.output()
