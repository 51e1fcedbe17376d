"""The few lines that differ between one process and `torchrun --nproc_per_node N` (DDP)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from models.device import DeviceError, resolve_device
from models.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def rank_device(spec: str, local_rank: int = 0) -> torch.device:
    """This process's `--device` (`models.device.resolve_device` with `cuda` = its local GPU), made current."""
    try:
        dev = resolve_device(spec, local_rank)
    except DeviceError as e:
        raise ConfigError(f"--device {spec}: {e}") from None
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def setup(device: str) -> DistInfo:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = rank_device(device, local)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, dev)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_from_main(module: torch.nn.Module) -> None:
    """Give every rank rank 0's weights and buffers (BN statistics drift per rank: DDP syncs them only on forward)."""
    if dist.is_available() and dist.is_initialized():
        for t in module.state_dict().values():
            dist.broadcast(t, src=0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
