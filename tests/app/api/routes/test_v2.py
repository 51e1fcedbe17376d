"""The Open Inference Protocol (KServe v2) with a real client written by others: Triton's `tritonclient[http]`.

Against a live `resnet-serve` on a loopback port; results must equal `/v1/predict` for the same images.
"""

from __future__ import annotations

import base64
import json
import struct

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from devkit.images import image_bytes
from models import load_checkpoint, load_image_tensor

MODEL = "resnet"


IMAGES = [image_bytes("PNG", seed=i) for i in range(4)]


@pytest.fixture(scope="module")
def client(server):
    c = triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=120)
    yield c
    c.close()


@pytest.fixture(scope="module")
def v1_probabilities(server) -> list[dict[int, float]]:
    """Every class's score from /v1/predict, per image: the reference for the v2 answers."""
    out = []
    for data in IMAGES:
        r = httpx.post(f"{server.url}/v1/predict?top_k=100", files={"file": ("x.png", data, "image/png")}, timeout=60)
        assert r.status_code == 200, r.text
        out.append({p["index"]: p["score"] for p in r.json()["predictions"]})
    return out


def _as_probs(row: np.ndarray) -> dict[int, float]:
    return dict(enumerate(row.tolist()))


def _image_input(images: list[bytes], binary: bool) -> triton.InferInput:
    inp = triton.InferInput("image", [len(images)], "BYTES")
    payload = images if binary else [base64.b64encode(b) for b in images]  # JSON: base64 strings
    inp.set_data_from_numpy(np.array(payload, dtype=np.object_), binary_data=binary)
    return inp


def test_health_and_metadata(client, checkpoint):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("other")
    meta = client.get_model_metadata(MODEL)
    assert meta == client.get_model_metadata(MODEL, "1")
    ckpt = load_checkpoint(checkpoint)
    spec = ckpt.preprocess
    assert meta["name"] == MODEL and meta["versions"] == ["1"]
    inputs = {t["name"]: t for t in meta["inputs"]}
    assert (inputs["image"]["datatype"], inputs["image"]["shape"]) == ("BYTES", [-1, 1])  # Triton's dims [1]
    shape = [-1, spec.channels, spec.crop, spec.crop]
    assert (inputs["input"]["datatype"], inputs["input"]["shape"]) == ("FP32", shape)
    assert inputs["input"]["parameters"] == {"resize": spec.resize, "crop": spec.crop, "mean": list(spec.mean),
                                             "std": list(spec.std), "interpolation": spec.interpolation,
                                             "color_mode": spec.color_mode}
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(ckpt.classes)]}]
    assert meta["parameters"]["classes"] == ckpt.classes and meta["parameters"]["checkpoint_sha256"] == ckpt.sha256
    server_meta = client.get_server_metadata()
    assert {"binary_tensor_data", "classification"} <= set(server_meta["extensions"])
    with pytest.raises(InferenceServerException, match="unknown model 'other'"):
        client.get_model_metadata("other")
    with pytest.raises(InferenceServerException, match="unknown version '7'"):
        client.get_model_metadata(MODEL, "7")


@pytest.mark.parametrize("binary", [False, True], ids=["json-base64", "binary-data"])
def test_bytes_input_batch_equals_v1(client, v1_probabilities, binary):
    result = client.infer(MODEL, [_image_input(IMAGES, binary)],
                          outputs=[triton.InferRequestedOutput("probabilities", binary_data=binary)])
    probs = result.as_numpy("probabilities")
    assert probs.shape == (len(IMAGES), 3) and probs.dtype == np.float32
    for row, expected in zip(probs, v1_probabilities, strict=True):
        assert _as_probs(row) == pytest.approx(expected, abs=1e-5)
    assert result.get_response()["model_name"] == MODEL


def test_no_requested_outputs_answers_every_output_in_binary(client, v1_probabilities):
    result = client.infer(MODEL, [_image_input(IMAGES[:1], True)], model_version="1")
    assert result.get_output("probabilities")["parameters"]["binary_data_size"] == 3 * 4
    assert _as_probs(result.as_numpy("probabilities")[0]) == pytest.approx(v1_probabilities[0], abs=1e-5)


def test_fp32_input_preprocessed_by_the_client(client, checkpoint, v1_probabilities):
    spec = load_checkpoint(checkpoint).preprocess
    batch = np.stack([load_image_tensor(data, spec).numpy() for data in IMAGES]).astype(np.float32)
    for binary in (True, False):
        inp = triton.InferInput("input", list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch, binary_data=binary)
        probs = client.infer(MODEL, [inp]).as_numpy("probabilities")
        for row, expected in zip(probs, v1_probabilities, strict=True):
            assert _as_probs(row) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("binary", [True, False])
def test_classification_extension(client, checkpoint, v1_probabilities, binary):
    classes = load_checkpoint(checkpoint).classes
    out = triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=2)
    result = client.infer(MODEL, [_image_input(IMAGES, True)], outputs=[out])
    labels = result.as_numpy("probabilities")
    assert labels.shape == (len(IMAGES), 2)
    for row, expected in zip(labels, v1_probabilities, strict=True):
        best = sorted(expected, key=expected.get, reverse=True)[:2]
        parsed = [(v.decode() if isinstance(v, bytes) else v).split(":") for v in row]
        assert [int(i) for _, i, _ in parsed] == best
        assert [lab for _, _, lab in parsed] == [classes[i] for i in best]
        assert [float(s) for s, _, _ in parsed] == pytest.approx([expected[i] for i in best], abs=1e-5)


def test_a_bad_image_in_a_batch_fails_the_request_naming_the_element(client):
    with pytest.raises(InferenceServerException, match="element 2") as exc:
        client.infer(MODEL, [_image_input([IMAGES[0], IMAGES[1], b"not an image", IMAGES[3]], True)])
    assert exc.value.status() == "400"


def _post(server, body: bytes, headers: dict[str, str] | None = None, path: str = f"/v2/models/{MODEL}/infer"):
    return httpx.post(server.url + path, content=body, headers=headers or {}, timeout=60)


@pytest.mark.parametrize(("request_body", "fragment"), [
    ({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": ["aGk="]}]}, "datatype BYTES"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGk="]}]}, "holds 1 elements"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["**not base64**"]}]}, "base64"),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 2, 2], "data": [0.0] * 12}]}, "shape [N, 3"),
    ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1], "data": [1]}]}, "unknown input"),
    ({"inputs": []}, "must hold one tensor"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}],
      "outputs": [{"name": "logits"}]}, "unknown output"),
])
def test_bad_requests_are_400_with_the_protocols_error_shape(server, request_body, fragment):
    r = _post(server, json.dumps(request_body).encode())
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error"} and fragment in r.json()["error"]


def test_binary_data_errors_and_unknown_paths(server):
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 10}}]}).encode()
    r = _post(server, header + struct.pack("<I", 100) + b"abcdef",
              {"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 400 and "claims 100 bytes" in r.json()["error"]
    r = _post(server, b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    assert httpx.post(f"{server.url}/v2/models/other/infer", content=b"{}").json() == {
        "error": "unknown model 'other'; this server serves 'resnet'"}
    assert httpx.get(f"{server.url}/v2/nothing-here").status_code == 404
    assert set(httpx.get(f"{server.url}/v2/nothing-here").json()) == {"error"}


@pytest.mark.anyio
async def test_limits_and_api_key_apply_to_v2(serve_app, settings_for):
    body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "data": [base64.b64encode(IMAGES[0]).decode()]}]}).encode()
    async with serve_app(settings_for(api_key="k", max_batch_files=2, max_upload_bytes=500)) as (_, client):
        r = await client.post(f"/v2/models/{MODEL}/infer", content=body)
        assert r.status_code == 401 and set(r.json()) == {"error"}
        r = await client.post(f"/v2/models/{MODEL}/infer", content=b"x" * 10**6, headers={"X-API-Key": "k"})
        assert r.status_code == 413 and set(r.json()) == {"error"}
        r = await client.post(f"/v2/models/{MODEL}/infer", content=body, headers={"X-API-Key": "k"})
        assert r.status_code == 413 and "element 0" in r.json()["error"]  # the image is over 500 bytes
        assert (await client.get("/v2/health/ready")).status_code == 200  # health stays open
        metrics = (await client.get("/metrics")).text
        assert 'endpoint="/v2/models/{name}/infer"' in metrics


def test_the_readme_snippet_works_as_written(server):
    import re
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[4]
    readme = (repo / "README.md").read_text()
    section = readme[readme.index("### Use it from KServe / Triton clients"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'InferenceServerClient("127.0.0.1:8000")' in code
    code = code.replace("127.0.0.1:8000", server.url.removeprefix("http://"))
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    entries = re.findall(r"b'([0-9.]+):(\d+):(\w+)'", out.stdout)
    assert len(entries) == 3 and all(label in ("cat", "dog", "bird") for _, _, label in entries)
