"""`resnet-train` as real processes: killed mid-epoch and resumed exactly; two CPU processes under torchrun."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from cli.evaluate import evaluate_checkpoint
from models import load_checkpoint
from tests.training.tinydata import ROOT, TINY_ARGS, make_image_folder

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
       "TQDM_MININTERVAL": "0", "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
TRAIN = [sys.executable, "-m", "training.train"]
# 72 training images in batches of 8: 9 steps an epoch, so there is time to kill inside epoch 2
RESUME_ARGS = [*TINY_ARGS, "--epochs", "2", "--batch-size", "8", "--ema", "0.9", "--mixup", "0.2",
               "--label-smoothing", "0.1", "--deterministic"]
EPOCH2_STEP = re.compile(rb"epoch 2/2: *\d+%\|[^|\r\n]*\| *(\d+)/9")


class StderrWatcher(threading.Thread):
    """Collects a process's stderr as it comes (tqdm redraws with carriage returns, not newlines)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.proc, self.data = proc, b""

    def run(self) -> None:
        fd = self.proc.stderr.fileno()
        while chunk := os.read(fd, 65536):
            self.data += chunk


def kill_inside_epoch_2(proc: subprocess.Popen, out: Path, timeout: float = 240) -> int:
    """SIGKILL once the progress bar shows at least 2 steps of epoch 2 done; returns that step count."""
    watcher = StderrWatcher(proc)
    watcher.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [int(m.group(1)) for m in EPOCH2_STEP.finditer(watcher.data)]
        if steps and max(steps) >= 2:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return max(steps)
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be killed:\n{watcher.data.decode(errors='replace')[-3000:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("epoch 2 never started")


def test_resume_after_sigkill_gives_the_same_weights_and_ema(tmp_path):
    data = make_image_folder(tmp_path / "data", train=24, val=4)
    ref_out, run_out = tmp_path / "ref", tmp_path / "killed"
    common = [*TRAIN, "--data", str(data), *RESUME_ARGS]
    reference = subprocess.Popen([*common, "--out", str(ref_out)], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
    victim = subprocess.Popen([*common, "--out", str(run_out), "--progress"], cwd=ROOT, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    steps_done = kill_inside_epoch_2(victim, run_out)
    assert victim.returncode == -signal.SIGKILL
    interrupted = torch.load(run_out / "last.pt", weights_only=True)
    assert interrupted["resume"]["epoch"] == 1, "the kill came after epoch 2 had finished"
    assert interrupted["resume"]["step"] == 9 and steps_done < 9
    assert not (run_out / "model.pt").exists()

    resumed = subprocess.run([*common, "--out", str(run_out), "--resume"], cwd=ROOT, env=ENV, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    _, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err.decode(errors="replace")[-3000:]

    ref, res = (torch.load(d / "last.pt", weights_only=True) for d in (ref_out, run_out))
    assert res["resume"]["epoch"] == ref["resume"]["epoch"] == 2 and res["resume"]["step"] == 18
    for key in ("model", "ema"):
        a = ref["resume"][key] if key == "model" else ref["resume"]["ema"]["weights"]
        b = res["resume"][key] if key == "model" else res["resume"]["ema"]["weights"]
        assert a.keys() == b.keys()
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{key} differs after resume: {different[:5]}"
    assert res["resume"]["ema"]["updates"] == ref["resume"]["ema"]["updates"] == 18
    momentum_ref = [s["momentum_buffer"] for s in ref["resume"]["optimizer"]["state"].values()]
    momentum_res = [s["momentum_buffer"] for s in res["resume"]["optimizer"]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(momentum_ref, momentum_res, strict=True))
    assert all(torch.equal(v, ref["state_dict"][k]) for k, v in res["state_dict"].items())  # published = EMA
    rows = [json.loads(line) for line in (run_out / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (ref_out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["val_top1"] for r in rows] == [r["val_top1"] for r in ref_rows]
    assert load_checkpoint(run_out / "model.pt").classes == ["blue", "green", "red"]


def test_torchrun_two_cpu_processes(tmp_path):
    data = make_image_folder(tmp_path / "data", train=10, val=5)  # 15 validation images: not a multiple of 2
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY_ARGS,
           "--batch-size", "8", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    logs = proc.stdout + proc.stderr
    assert logs.count("epoch 1/1  train loss") == 1 and logs.count("done: final val top1") == 1  # rank 0 only
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    assert rows[0]["val_count"] == 15  # the sampler's padding is not counted twice
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt.training["world_size"] == 2 and ckpt.training["global_batch_size"] == 16
    # the metrics reduced over both ranks are those of the whole validation set, seen by one process
    single = evaluate_checkpoint(ckpt, str(data), device="cpu")
    assert single["count"] == 15
    assert rows[0]["val_top1"] == pytest.approx(single["top1"], abs=1e-9)
    assert ckpt.metrics["confusion"] == single["confusion"]
