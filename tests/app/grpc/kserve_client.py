"""Run by test_kserve_sdk.py in a child process: KServe's SDK (REST and gRPC clients) against a live server.

A separate process because kserve's generated `inference.*` protobuf messages and tritonclient's (which the
server and the other tests load) cannot share one process's descriptor pool. Prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


def _image(data: bytes) -> InferInput:
    """Image bytes are not text: kserve sends them as binary data (REST) or raw contents (gRPC)."""
    inp = InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([data], dtype=np.object_), binary_data=True)
    return inp


async def main(http_url: str, grpc_url: str, image_path: str, tensor_path: str) -> dict[str, object]:
    data, batch = Path(image_path).read_bytes(), np.load(tensor_path)
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=60))
    out: dict[str, object] = {
        "rest_health": [await rest.is_server_live(http_url), await rest.is_server_ready(http_url),
                        await rest.is_model_ready(http_url, "resnet")]}
    tensor = InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=False)
    response = await rest.infer(http_url, InferRequest(model_name="resnet", infer_inputs=[tensor]), "resnet")
    out["rest_tensor"] = response.outputs[0].as_numpy().tolist()
    response = await rest.infer(http_url, InferRequest(model_name="resnet", infer_inputs=[_image(data)]),
                                "resnet")
    out["rest_image"] = response.outputs[0].as_numpy().tolist()
    await rest.close()
    grpc_client = InferenceGRPCClient(grpc_url, retries=2)  # kserve turns retries into maxAttempts, >= 2
    out["grpc_health"] = [await grpc_client.is_server_live(), await grpc_client.is_server_ready(),
                          await grpc_client.is_model_ready("resnet")]
    response = await grpc_client.infer(InferRequest(model_name="resnet", infer_inputs=[_image(data)]))
    out["grpc_image"] = response.outputs[0].as_numpy().tolist()
    await grpc_client.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:5]))))
