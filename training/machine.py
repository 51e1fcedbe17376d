"""Defaults that depend on the machine: bf16 autocast where the hardware runs it natively, channels-last.

Measured on a 2-core Xeon with AMX-BF16 (docs/BENCHMARKS.md, benchmark 6): resnet20 on 28x28 trains at
~770 images/s in fp32, ~1090 channels-last, ~1990 with bf16 autocast + channels-last.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(device: torch.device) -> str:
    """Why `device` runs bf16 natively ("" when it does not: there autocast is emulated and slower)."""
    if device.type == "cuda":
        return "CUDA bf16" if torch.cuda.is_bf16_supported() else ""
    found = [f for f in BF16_CPU_FLAGS if f in cpu_flags()]
    return f"CPU has {' and '.join(found)}" if found else ""


def resolve_auto(amp: str, channels_last: bool | None, device: torch.device) -> tuple[str, bool, list[str]]:
    """Turn `--amp auto` and an unset `--channels-last` into choices for this machine, with the reasons."""
    notes = []
    if amp == "auto":
        why = native_bf16(device)
        amp = "bf16" if why else "none"
        notes.append(f"amp={amp} ({why or 'no native bf16 on ' + device.type})")
    if channels_last is None:
        channels_last = True
        notes.append("channels_last=on (faster convolutions with oneDNN and cuDNN)")
    return amp, channels_last, notes
