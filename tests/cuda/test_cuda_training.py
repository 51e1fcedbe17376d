"""The training worker on the GPU: one bf16 epoch, `torchrun` with one process, and DDP over nccl.

With one GPU, DDP cannot run two ranks (NCCL refuses two ranks on one device), and `resnet-train` under
`torchrun --nproc_per_node 1` has a world of one, where training/distributed.py joins no process group. So the
nccl case joins a one-rank group itself and runs a DDP step and the worker's collectives through it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from cli.evaluate import evaluate_checkpoint
from models import load_checkpoint
from tests.training.tinydata import CLASSES, ROOT, TINY_ARGS, make_image_folder
from training.config import parse_config
from training.train import run

pytestmark = pytest.mark.cuda

TORCHRUN_ONE = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]


def test_one_bf16_epoch_on_cuda_writes_a_checkpoint_the_cpu_loads(tmp_path):
    data = make_image_folder(tmp_path / "data", train=16, val=4)
    out = tmp_path / "run"
    metrics = run(parse_config(["--data", str(data), "--out", str(out), "--epochs", "1", *TINY_ARGS,
                                "--batch-size", "8", "--device", "cuda", "--amp", "bf16"]))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["val_count"] == 12 and rows[0]["images_per_s"] > 0
    ckpt = load_checkpoint(out / "model.pt")  # onto the CPU
    config = ckpt.training["config"]
    assert (config["device"], config["amp"], config["channels_last"]) == ("cuda", "bf16", True)
    assert ckpt.classes == CLASSES
    assert all(torch.isfinite(t).all() for t in ckpt.model.state_dict().values() if t.is_floating_point())
    # evaluated again in fp32 on the CPU: the same images, at most one borderline image decided otherwise
    again = evaluate_checkpoint(ckpt, str(data), device="cpu")
    assert again["count"] == 12
    assert again["top1"] == pytest.approx(metrics["val_top1"], abs=1 / 12 + 1e-9)


def test_torchrun_one_process_trains_on_the_gpu(tmp_path, cuda_env):
    data = make_image_folder(tmp_path / "data", train=8, val=4)
    out = tmp_path / "ddp"
    cmd = [*TORCHRUN_ONE, "-m", "training.train", "--data", str(data), "--out", str(out), "--epochs", "1",
           *TINY_ARGS, "--batch-size", "8", "--device", "cuda", "--amp", "bf16"]
    proc = subprocess.run(cmd, cwd=ROOT, env=cuda_env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "done: final val top1" in proc.stdout + proc.stderr
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt.training["world_size"] == 1 and ckpt.training["config"]["device"] == "cuda"


NCCL_STEP = """
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from training import distributed

info = distributed.setup("cuda")  # a world of one: joins no group, so join one here
dist.init_process_group("nccl", device_id=info.device)
model = DistributedDataParallel(torch.nn.Linear(4, 2).to(info.device), device_ids=[info.device.index])
model(torch.randn(8, 4, device=info.device)).sum().backward()
assert all(p.grad is not None for p in model.parameters())
total = distributed.all_reduce_sum(torch.tensor([2.0, 3.0], device=info.device))
distributed.broadcast_from_main(model.module)
distributed.barrier()
print("nccl step:", dist.get_backend(), dist.get_world_size(), total.tolist(), info.device, flush=True)
distributed.cleanup()
"""


def test_ddp_step_over_nccl_under_torchrun(tmp_path, cuda_env):
    script = tmp_path / "nccl_step.py"
    script.write_text(NCCL_STEP)
    proc = subprocess.run([*TORCHRUN_ONE, str(script)], cwd=ROOT, env=cuda_env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "nccl step: nccl 1 [2.0, 3.0] cuda:0" in proc.stdout
