"""Inference backends: run a checkpoint's model on a preprocessed batch (docs/CONTRACTS.md).

Used by the service (`app/backends/__init__.py: build_backend` picks one from the settings) and by
`resnet-predict` (training/predict.py), so both run a model the same way.
"""

from __future__ import annotations

import importlib.util

import torch

from models.backends.base import InferenceBackend
from models.backends.torch_backend import TorchBackend

__all__ = ["InferenceBackend", "TorchBackend", "onnx_backend_available", "onnx_runtime_class",
           "openvino_available", "preferred_onnx_runtime", "use_channels_last"]


def onnx_backend_available() -> bool:
    """True when onnxruntime imports and the ONNX backend module is part of this installation."""
    if importlib.util.find_spec("models.backends.onnx_backend") is None:
        return False
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def openvino_available() -> bool:
    """True when the `openvino` package is installed (`pip install 'resnet-service[openvino]'`)."""
    return importlib.util.find_spec("openvino") is not None


def preferred_onnx_runtime(precision: str) -> str:
    """openvino for a bf16 or int8 artifact when it is installed (several times faster there, docs/BENCHMARKS.md
    section 7; ONNX Runtime cannot run bf16 fast), onnxruntime otherwise (as fast as OpenVINO at fp32)."""
    return "openvino" if precision in ("bf16", "int8") and openvino_available() else "onnxruntime"


def onnx_runtime_class(runtime: str) -> type:
    """The backend class of `runtime` ("onnxruntime" or "openvino"); both take (checkpoint, *, onnx_path, threads,
    device). Imported here, so that neither runtime is imported before it is used."""
    if runtime == "openvino":
        from models.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend
    from models.backends.onnx_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend


def use_channels_last(device: torch.device) -> bool:
    """channels_last pays off with cuDNN; on the CPU the default layout is as fast for batch sizes we serve."""
    return device.type == "cuda"
