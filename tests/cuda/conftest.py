"""The CUDA checks (`-m cuda`, deselected by default; bench/gpu_check.sh runs them on a GPU machine).

tests/conftest.py hides GPUs (CUDA_VISIBLE_DEVICES="") unless the variable is already set, so these tests see a
GPU only when the caller sets it (gpu_check.sh sets CUDA_VISIBLE_DEVICES=0). Where none is visible, each test is
skipped with that reason, also when a `-m` on the command line has replaced the default `not cuda`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA device visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}; "
                    "tests/conftest.py hides GPUs unless it is set: run bench/gpu_check.sh)")


@pytest.fixture
def cuda_env() -> dict[str, str]:
    """The environment for a child process (`torchrun`) that uses the GPU this process sees; NCCL and gloo
    bootstrap over loopback, as the one-machine runs here need nothing else."""
    repo = str(Path(__file__).resolve().parents[2])
    return {"NCCL_SOCKET_IFNAME": "lo", "GLOO_SOCKET_IFNAME": "lo", **os.environ, "PYTHONPATH": repo,
            "OMP_NUM_THREADS": "2", "TQDM_MININTERVAL": "0"}
