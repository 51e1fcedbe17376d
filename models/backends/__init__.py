"""Inference backends: the one place that decides which runtime runs a model, and opens it.

`open_backend` is called by the service (app/services/model_manager.py), `resnet-export`'s accuracy guard,
`resnet-predict` and the benchmarks, so the runtime that was checked is the runtime that serves. `auto` resolves
in `resolve_runtime`: torch on CUDA for a checkpoint; on the CPU, OpenVINO for a bf16 or int8 artifact when it is
installed (several times faster there, docs/BENCHMARKS.md section 7), else ONNX Runtime (as fast as OpenVINO at
fp32, ~1.9x eager torch), else torch.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from models.backends.artifact import Artifact, open_artifact
from models.backends.base import RUNTIMES, InferenceBackend, serving_accuracy
from models.backends.torch_backend import TorchBackend
from models.checkpoint import Checkpoint
from models.device import resolve_device
from models.errors import ResNetServiceError, RuntimeUnavailableError

__all__ = ["RUNTIMES", "Artifact", "InferenceBackend", "TorchBackend", "open_backend", "resolve_runtime",
           "runtime_available", "runtimes_for", "serving_accuracy"]
log = logging.getLogger(__name__)
_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
_EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}


def runtime_available(runtime: str) -> bool:
    """True when `runtime`'s package is installed (torch always is)."""
    return runtime == "torch" or importlib.util.find_spec(_PACKAGES[runtime]) is not None


def runtimes_for(precision: str) -> tuple[str, ...]:
    """The ONNX runtimes that can run an artifact of `precision` (bf16 only on OpenVINO), installed or not."""
    return ("openvino",) if precision == "bf16" else ("onnxruntime", "openvino")


def resolve_runtime(requested: str, device: torch.device, precision: str | None) -> str:
    """The runtime `requested` ("auto" or a name) means for a model on `device`; `precision` is the artifact's, or
    None for a checkpoint that is not yet exported (then `auto` may pick torch)."""
    if requested != "auto":
        return requested
    if precision is None and device.type != "cpu":
        return "torch"
    if precision in ("bf16", "int8") and runtime_available("openvino"):
        return "openvino"
    if precision == "bf16":
        return "openvino"  # the only runtime for it: opening it says what to install
    if precision is None and not runtime_available("onnxruntime"):
        return "torch"
    return "onnxruntime"


def open_backend(checkpoint: Checkpoint | None = None, *, artifact: str | Path | None = None,
                 device: torch.device | str = "auto", runtime: str = "auto", threads: int = 0,
                 scoring: bool = False) -> InferenceBackend:
    """Open the runtime for `checkpoint` (exported to ONNX at open for an ONNX runtime) or for the `artifact` file
    written by `resnet-export` (from `checkpoint`, when both are given: checked by sha256).

    An artifact is run as given or refused (`RuntimeUnavailableError`, `CheckpointError`), never replaced by another
    runtime; only `auto` for a bare checkpoint falls back to torch when ONNX Runtime cannot start. A low-precision
    artifact with no accuracy record for the chosen runtime is logged as unchecked, unless it is being `scoring`
    (by `resnet-export`, which records it).
    """
    device = resolve_device(device) if isinstance(device, str) else device
    precision = _artifact_precision(artifact)
    chosen = resolve_runtime(runtime, device, precision)
    log.info("runtime %s for %s (asked: %s, device %s)", chosen, artifact or _name(checkpoint), runtime, device)
    if chosen == "torch":
        if checkpoint is None or artifact is not None:
            raise RuntimeUnavailableError("the torch runtime runs a checkpoint, not an ONNX file; "
                                          "give the checkpoint, or pick onnxruntime or openvino")
        return TorchBackend(checkpoint, device)
    try:
        backend = _open_onnx(chosen, checkpoint, artifact, device, threads)
    except ResNetServiceError as e:
        if runtime != "auto" or artifact is not None or checkpoint is None:
            raise
        log.warning("%s unavailable, falling back to torch: %s", chosen, e)
        return TorchBackend(checkpoint, device)
    if not scoring:
        _warn_unchecked(backend)
    return backend


def _open_onnx(runtime: str, checkpoint: Checkpoint | None, artifact: str | Path | None, device: torch.device,
               threads: int) -> InferenceBackend:
    if runtime not in _PACKAGES:
        raise RuntimeUnavailableError(f"unknown runtime {runtime!r} (known: auto, {', '.join(RUNTIMES)})")
    if not runtime_available(runtime) or importlib.util.find_spec("onnx") is None:
        raise RuntimeUnavailableError(f"the {runtime} runtime needs pip install 'resnet-service[{_EXTRAS[runtime]}]'")
    with open_artifact(checkpoint, artifact) as opened:
        try:
            return _runtime_class(runtime)(opened, threads=threads, device=str(device))
        except ResNetServiceError:
            raise
        except Exception as e:  # export or session creation failed: say so in one line
            raise RuntimeUnavailableError(f"{runtime} failed to start: {type(e).__name__}: {e}") from None


def _runtime_class(runtime: str) -> type:
    """Imported here, so that neither runtime is imported before it is used."""
    if runtime == "openvino":
        from models.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend
    from models.backends.onnx_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend


def _artifact_precision(artifact: str | Path | None) -> str | None:
    """The artifact's precision ("fp32" when unreadable: opening it then says why, in one line)."""
    if artifact is None:
        return None
    from models.onnx_export import read_onnx_metadata

    try:
        return str(read_onnx_metadata(artifact).get("precision", "fp32"))
    except ResNetServiceError:
        return "fp32"


def _warn_unchecked(backend: InferenceBackend) -> None:
    """A low-precision artifact served on a runtime its export did not check: say so once, at open."""
    if backend.precision != "fp32" and serving_accuracy(backend) is None:
        checked = ", ".join(sorted(backend.accuracy_by_runtime)) or "none"
        log.warning("the %s artifact runs on %s, where its accuracy was not checked (checked on: %s); run "
                    "resnet-export with %s installed to record it", backend.precision, backend.name, checked,
                    backend.name)


def _name(checkpoint: Checkpoint | None) -> str:
    return checkpoint.path.name if checkpoint is not None else "?"
