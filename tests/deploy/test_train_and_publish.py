"""deploy/train-and-publish.sh, the compose trainer's entrypoint, run here as a local process: it trains a tiny
model into a run folder of the models directory and publishes it where the API reads its checkpoint."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from devkit.checkpoints import make_checkpoint
from models import default_preprocess, load_checkpoint, read_class_index
from tests.deploy.deploy_files import REPO, VENV_BIN

SCRIPT = REPO / "deploy" / "train-and-publish.sh"
TINY = ["--arch", "resnet20", "--epochs", "1", "--batch-size", "4", "--image-size", "32", "--workers", "0",
        "--threads", "1", "--no-progress", "--lr-scaling", "none", "--warmup-epochs", "0"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """An ImageFolder tree: train/{cat,dog}/ with 4 noisy 36x36 images each."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for label, base in (("cat", 60), ("dog", 190)):
        (root / "train" / label).mkdir(parents=True)
        for i in range(4):
            pixels = np.clip(base + rng.normal(0, 30, (36, 36, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "train" / label / f"{i}.png")
    return root


@pytest.fixture
def models_dir(tmp_path) -> Path:
    """The models volume as a fresh one starts: the image's default model (here a 3-class stand-in)."""
    out = tmp_path / "models"
    make_checkpoint(out / "model.pt", ["a", "b", "c"], spec=default_preprocess("resnet20"))
    return out


def run_script(models_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("TRAIN_NPROC", "TORCHRUN_ARGS", "PUBLISH")}
    environ.update(PATH=f"{VENV_BIN}{os.pathsep}{environ.get('PATH', '')}", MODELS_DIR=str(models_dir), **env)
    result = subprocess.run(["sh", str(SCRIPT), *args], env=environ, cwd=REPO, capture_output=True, text=True,
                            timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def served(models_dir: Path):
    """What the API loads: model.pt with the class_indices.json beside it (load_checkpoint checks they agree)."""
    return load_checkpoint(models_dir / "model.pt", class_index=models_dir / "class_indices.json")


def test_trains_into_a_run_folder_and_publishes_the_model(models_dir, dataset):
    run_script(models_dir, "--data", str(dataset), *TINY)
    (run,) = (models_dir / "runs").iterdir()
    assert {"model.pt", "last.pt", "class_indices.json", "metrics.jsonl"} <= {p.name for p in run.iterdir()}
    assert (models_dir / "model.pt").read_bytes() == (run / "model.pt").read_bytes()
    assert served(models_dir).classes == ["cat", "dog"]
    assert read_class_index(models_dir / "class_indices.json") == ["cat", "dog"]
    assert not list(models_dir.glob(".*.tmp")), "temporary files left behind"


def test_publish_0_trains_but_leaves_the_served_model(models_dir, dataset):
    before = (models_dir / "model.pt").read_bytes()
    out = run_script(models_dir, "--data", str(dataset), *TINY, PUBLISH="0")
    (run,) = (models_dir / "runs").iterdir()
    assert (run / "model.pt").exists()
    assert (models_dir / "model.pt").read_bytes() == before
    assert served(models_dir).classes == ["a", "b", "c"]
    assert "served model is unchanged" in out.stdout


def test_out_flag_chooses_the_run_folder(models_dir, dataset, tmp_path):
    run_script(models_dir, "--data", str(dataset), *TINY, f"--out={tmp_path / 'chosen'}")
    assert not (models_dir / "runs").exists()
    assert (models_dir / "model.pt").read_bytes() == (tmp_path / "chosen" / "model.pt").read_bytes()


def test_help_prints_resnet_train_help_and_publishes_nothing(models_dir):
    before = (models_dir / "model.pt").read_bytes()
    out = run_script(models_dir, "--data", "/data", "--help")
    assert "usage: resnet-train" in out.stdout and "--data" in out.stdout
    assert (models_dir / "model.pt").read_bytes() == before and not (models_dir / "runs").exists()


def test_torchrun_with_two_processes_publishes_one_model(models_dir, dataset):
    """TRAIN_NPROC switches to `torchrun -m training.train` (DDP; gloo on the CPU), as for several GPUs."""
    run_script(models_dir, "--data", str(dataset), *TINY, TRAIN_NPROC="2")
    (run,) = (models_dir / "runs").iterdir()
    checkpoint = served(models_dir)
    assert checkpoint.classes == ["cat", "dog"]
    assert checkpoint.training["world_size"] == 2
    assert (models_dir / "model.pt").read_bytes() == (run / "model.pt").read_bytes()
