"""ONNX Runtime backend: the same checkpoint, run by ORT (about 1.7x eager PyTorch on a small CPU).

Runs an artifact (models/backends/artifact.py): a file written by `resnet-export` (fp32 or int8), or the
checkpoint exported at startup. Feature maps stay on the torch path: this backend only turns a preprocessed batch
into logits.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from models.backends.artifact import Artifact
from models.errors import CheckpointError

log = logging.getLogger(__name__)


def _providers(device: torch.device | str) -> tuple[list[Any], str]:
    """ORT execution providers for a device resolved by `models.device.resolve_device`, and the one actually used.

    A CUDA device falls back to the CPU, with a warning, when this onnxruntime has no CUDA provider.
    """
    import onnxruntime as ort

    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index or 0
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], f"cuda:{index}"
        log.warning("onnxruntime has no CUDAExecutionProvider here; running cuda:%d on the CPU", index)
    return ["CPUExecutionProvider"], "cpu"


def session_options(threads: int, *, allow_spinning: bool = False):
    """One intra-op pool of `threads` (0 = ORT's default, one per physical core), no inter-op parallelism.

    Spinning is off by default: ORT's workers otherwise busy-wait after each batch and take the CPU from
    the decode threads that are preparing the next one (measured in docs/BENCHMARKS.md).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    opts.log_severity_level = 3  # warnings about unused initializers etc. are noise here
    return opts


class OnnxRuntimeBackend:
    """`InferenceBackend` on ONNX Runtime: float32 NCHW batch in, float32 logits on the CPU out."""

    name = "onnxruntime"

    def __init__(self, artifact: Artifact, *, threads: int, device: str, allow_spinning: bool = False) -> None:
        import onnxruntime as ort

        from models.onnx_export import INPUT_NAME, OUTPUT_NAME

        if artifact.precision == "bf16":
            raise CheckpointError(f"{artifact.path}: a bf16 artifact runs on OpenVINO (ONNX Runtime's CPU "
                                  "provider has no fast bf16 convolutions): pip install "
                                  "'resnet-service[openvino]' and RESNET_BACKEND=openvino (or auto)")
        self._input, self._output = INPUT_NAME, OUTPUT_NAME
        providers, self.device = _providers(device)
        self._session = self._open(ort, artifact.path, session_options(threads, allow_spinning=allow_spinning),
                                   providers)
        self.onnx_path = str(artifact.path) if artifact.given else None
        self.metadata = artifact.metadata
        self.precision = artifact.precision
        self.accuracy_by_runtime = artifact.accuracy_by_runtime
        self.threads = threads
        self.providers = self._session.get_providers()

    @staticmethod
    def _open(ort, path: Path, opts, providers):
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
            raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({type(e).__name__}: {e})") from None

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float32 -> (N, K) float32 logits on the CPU."""
        x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self._session.run([self._output], {self._input: x})
        return torch.from_numpy(logits)
