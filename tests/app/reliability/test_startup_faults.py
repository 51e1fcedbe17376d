"""Broken deployments: `resnet-serve` stops with one clear line and a non-zero exit, and never unpickles code."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from devkit.checkpoints import make_checkpoint
from devkit.server import REPO, server_env
from models.onnx_export import with_metadata

pytestmark = pytest.mark.slow
SHIPPED_INT8 = REPO / "weights" / "model.int8.onnx"


class _RunsAShellCommand:
    """Pickles to `os.system(command)`: whoever unpickles it runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint-shaped file whose weights, once unpickled, create `marker`."""
    torch.save({"format": "resnet-checkpoint/1", "arch": "resnet20", "arch_kwargs": {"num_classes": 3},
                "state_dict": _RunsAShellCommand(f"touch {shlex.quote(str(marker))}"), "classes": ["a", "b", "c"]},
               path)
    return path


def _faults(tmp: Path) -> dict[str, tuple[dict[str, object], str]]:
    """name -> (settings, what the one error line must say)."""
    good = make_checkpoint(tmp / "good" / "model.pt")
    truncated = tmp / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    raw = torch.load(good, weights_only=True)
    wrong_count = tmp / "wrong_count.pt"
    torch.save({**raw, "classes": ["a", "b", "c", "d", "e"]}, wrong_count)  # 3 outputs, 5 class names
    disagreeing = tmp / "disagree" / "model.pt"
    disagreeing.parent.mkdir()
    shutil.copy(good, disagreeing)
    (disagreeing.parent / "class_indices.json").write_text(json.dumps({"0": "cat", "1": "bird", "2": "dog"}))
    evil = malicious_checkpoint(tmp / "evil.pt", tmp / "PWNED")
    fp16 = tmp / "model.fp16.onnx"  # a precision this project does not write
    fp16.write_bytes(with_metadata(SHIPPED_INT8.read_bytes(), {"precision": "fp16"}))
    return {
        "missing": ({"checkpoint": tmp / "missing.pt"}, "checkpoint file not found"),
        "truncated": ({"checkpoint": truncated}, "not a readable PyTorch checkpoint"),
        "wrong_class_count": ({"checkpoint": wrong_count}, "the final layer has 3 outputs but there are 5 classes"),
        "disagreeing_class_index": ({"checkpoint": disagreeing}, "class index disagrees with checkpoint"),
        "cuda_without_gpu": ({"checkpoint": good, "device": "cuda"}, "CUDA is not available"),
        "malicious_pickle": ({"checkpoint": evil}, "refused to load"),
        # The shipped int8 artifact of weights/model.pt, given to another checkpoint, on both ONNX runtimes.
        "foreign_int8_onnxruntime": ({"checkpoint": good, "backend": "onnxruntime", "onnx_path": SHIPPED_INT8},
                                     "model.int8.onnx: ONNX model was exported from checkpoint sha256"),
        "foreign_int8_openvino": ({"checkpoint": good, "backend": "openvino", "onnx_path": SHIPPED_INT8},
                                  "model.int8.onnx: ONNX model was exported from checkpoint sha256"),
        # auto never swaps a given artifact for another backend; several workers check it once, in the supervisor.
        "foreign_int8_auto": ({"checkpoint": good, "backend": "auto", "onnx_path": SHIPPED_INT8},
                              "model.int8.onnx: ONNX model was exported from checkpoint sha256"),
        "foreign_int8_two_workers": ({"checkpoint": good, "backend": "auto", "onnx_path": SHIPPED_INT8, "workers": 2},
                                     "model.int8.onnx: ONNX model was exported from checkpoint sha256"),
        "unknown_precision": ({"checkpoint": REPO / "weights" / "model.pt", "backend": "auto", "onnx_path": fp16},
                              "unknown precision 'fp16' in its metadata"),
    }


@pytest.fixture(scope="module")
def startups(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, str, str]]]:
    """Every faulty configuration started at once: name -> (exit code, output, expected line)."""
    tmp = tmp_path_factory.mktemp("faults")
    faults = _faults(tmp)
    procs = {}
    for name, (settings, _) in faults.items():
        args = [sys.executable, "-m", "app.cli", "--host", "127.0.0.1", "--port", "0"]
        procs[name] = subprocess.Popen(args, cwd=REPO, env=server_env(**settings), stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
    results = {}
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=300)
        results[name] = (proc.returncode, output, faults[name][1])
    return tmp, results


@pytest.mark.parametrize("name", ["missing", "truncated", "wrong_class_count", "disagreeing_class_index",
                                  "cuda_without_gpu", "malicious_pickle", "foreign_int8_onnxruntime",
                                  "foreign_int8_openvino", "foreign_int8_auto", "foreign_int8_two_workers",
                                  "unknown_precision"])
def test_a_faulty_deployment_stops_with_one_clear_line(startups, name):
    _, results = startups
    code, output, expected = results[name]
    assert code != 0, output
    lines = [line for line in output.splitlines() if "startup failed:" in line]
    assert len(lines) == 1, output
    assert expected in lines[0], output
    assert "Traceback" not in output


def test_the_malicious_checkpoint_never_ran_its_payload(startups):
    tmp, results = startups
    assert results["malicious_pickle"][0] != 0
    assert not (tmp / "PWNED").exists()


def test_the_malicious_checkpoint_really_is_malicious(tmp_path):
    """Control: unpickled without weights_only, the same kind of file does run its command."""
    marker = tmp_path / "ran"
    path = malicious_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()
