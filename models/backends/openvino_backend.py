"""OpenVINO backend: the checkpoint's ONNX artifact on OpenVINO's CPU plugin (fp32, bf16 or int8).

OpenVINO runs bf16 natively on CPUs with AVX512_BF16/AMX and an int8 QDQ model on VNNI/AMX integer units
(measured in docs/BENCHMARKS.md). Its CPU plugin silently computes in bf16 on such CPUs unless told
otherwise, so the inference precision is always set from the artifact's own: f32 for fp32 and int8
artifacts (their int8 parts stay int8), bf16 only for a bf16 artifact.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from models.backends.artifact import Artifact
from models.errors import CheckpointError

log = logging.getLogger(__name__)
_HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}


def native_bf16() -> bool:
    """True when OpenVINO's CPU plugin reports bf16 among the CPU's optimization capabilities."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def compile_options(precision: str, threads: int) -> dict[str, str]:
    """One stream of `threads` threads (0 = OpenVINO's choice), latency-oriented, at the artifact's precision."""
    opts = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if threads > 0:
        opts["INFERENCE_NUM_THREADS"] = str(threads)
    return opts


class OpenVinoBackend:
    """`InferenceBackend` on OpenVINO's CPU plugin: float32 NCHW batch in, float32 logits on the CPU out."""

    name = "openvino"

    def __init__(self, artifact: Artifact, *, threads: int, device: str) -> None:
        import openvino as ov

        if torch.device(device).type != "cpu":
            log.warning("the OpenVINO backend runs on the CPU; %s is not used", device)
        self.device = "cpu"
        self.precision = artifact.precision
        if self.precision == "bf16" and not native_bf16():
            log.warning("this CPU has no native bf16: OpenVINO emulates it, slower than fp32")
        core = ov.Core()
        try:
            self._compiled = core.compile_model(core.read_model(str(artifact.path)), "CPU",
                                                compile_options(self.precision, threads))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
            raise CheckpointError(f"{artifact.path}: OpenVINO cannot load it ({type(e).__name__}: {e})") from None
        self.onnx_path = str(artifact.path) if artifact.given else None
        self.metadata = artifact.metadata
        self.accuracy_by_runtime = artifact.accuracy_by_runtime
        self.threads = threads
        self._request = self._compiled.create_infer_request()

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float32 -> (N, K) float32 logits on the CPU (called from one thread at a time)."""
        x = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        self._request.infer({0: x})
        return torch.from_numpy(np.array(self._request.get_output_tensor(0).data, dtype=np.float32))
