"""KServe's Python SDK (`kserve` 0.21: InferenceRESTClient, InferenceGRPCClient) against a live `resnet-serve`:
health (which needs the protocol's JSON bodies) and inference, equal to tritonclient's answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tritonclient.http as triton

from devkit.images import image_bytes
from models import load_checkpoint, load_image_tensor

SCRIPT = Path(__file__).with_name("kserve_client.py")


def test_kserve_sdk_health_and_infer_over_rest_and_grpc(grpc_server, checkpoint, tmp_path):
    png = image_bytes("PNG", seed=5)
    (tmp_path / "x.png").write_bytes(png)
    batch = load_image_tensor(png, load_checkpoint(checkpoint).preprocess).numpy()[None].astype(np.float32)
    np.save(tmp_path / "x.npy", batch)
    out = subprocess.run([sys.executable, str(SCRIPT), grpc_server.http.url, grpc_server.grpc_url,
                          str(tmp_path / "x.png"), str(tmp_path / "x.npy")],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rest_health"] == [True, True, True] and result["grpc_health"] == [True, True, True]
    client = triton.InferenceServerClient(grpc_server.http.url.removeprefix("http://"))
    inp = triton.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([png], dtype=np.object_))
    expected = client.infer("resnet", [inp]).as_numpy("probabilities")
    for key in ("rest_tensor", "rest_image", "grpc_image"):
        np.testing.assert_allclose(np.array(result[key]), expected, atol=1e-5, err_msg=key)
