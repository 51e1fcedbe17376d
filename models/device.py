"""Device names (`auto`, `cpu`, `cuda`, `cuda:N`) to a `torch.device`: the one definition.

Callers: the service (`RESNET_DEVICE`, app/services/model_manager.py and its settings check), the training
worker (`--device`, training/distributed.py's `rank_device`, which passes its local rank), `resnet-eval` and
`resnet-predict`, and the ONNX Runtime backend (which maps the result to execution providers). Each caller turns
`DeviceError` (a `ResNetServiceError`) into its own message (a setting name, a flag).
"""

from __future__ import annotations

import re

import torch

from models.errors import ResNetServiceError

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"
_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


class DeviceError(ResNetServiceError, ValueError):
    """A device name that is malformed, or names hardware this machine does not have."""


def parse_device(name: str) -> str:
    """The name normalized (trimmed, lower case); `DeviceError` unless it is auto, cpu, cuda or cuda:N."""
    normal = str(name).strip().lower()
    if not _PATTERN.match(normal):
        raise DeviceError(f"must be {DEVICE_NAMES}")
    return normal


def resolve_device(name: str, default_index: int = 0) -> torch.device:
    """`auto` = CUDA when there is any, else the CPU; `cuda` = GPU `default_index` (a process's local rank).

    Asking for CUDA where there is none, or for a GPU index past the last one, is a `DeviceError`. No CUDA
    context is created here (no `current_device()`): a CPU-only caller never initialises CUDA.
    """
    name = parse_device(name)
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError("CUDA is not available on this machine")
    index = int(name.split(":", 1)[1]) if ":" in name else default_index
    if index >= torch.cuda.device_count():
        raise DeviceError(f"only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device("cuda", index)
