"""ModelManager and device resolution."""

from __future__ import annotations

import pytest
import torch

from app.core.config import Settings
from app.core.errors import ServiceConfigError
from app.core.metrics import ServiceMetrics
from app.services.model_manager import ModelManager, service_device
from app.services.model_source import requested_source
from models import CheckpointError


def test_auto_is_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert service_device("auto") == torch.device("cpu")
    assert service_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_refused(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ServiceConfigError) as info:
        service_device(name)
    assert str(info.value) == (f"RESNET_DEVICE={name} but CUDA is not available on this machine; "
                               "use RESNET_DEVICE=cpu or auto")


def test_cuda_index_beyond_the_visible_devices_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ServiceConfigError, match=r"RESNET_DEVICE=cuda:2 but only 1 CUDA device\(s\) exist"):
        service_device("cuda:2")
    assert service_device("cuda:0") == torch.device("cuda", 0)


def test_load_uses_the_class_index_beside_the_checkpoint(checkpoint, tmp_path):
    manager = ModelManager(Settings(checkpoint=checkpoint, device="cpu", backend="torch"), ServiceMetrics())
    model = manager.load()
    assert model.checkpoint.classes == ["cat", "dog", "bird"]
    assert manager.current is None  # loading never swaps


def test_load_refuses_a_disagreeing_class_index_beside_a_given_checkpoint(checkpoint, tmp_path):
    import shutil

    copy = tmp_path / "model.pt"
    shutil.copy(checkpoint, copy)
    (tmp_path / "class_indices.json").write_text('{"0": "cat", "1": "dog", "2": "fish"}')
    settings = Settings(checkpoint=checkpoint, device="cpu", backend="torch", model_dir=tmp_path)
    manager = ModelManager(settings, ServiceMetrics())
    with pytest.raises(CheckpointError, match="class index disagrees"):
        manager.load(requested_source(settings, str(copy), None))


def test_a_model_that_cannot_run_fails_warm_up(checkpoint, monkeypatch):
    import app.services.model_manager as mm

    class Broken:
        name, device = "torch", "cpu"

        def predict(self, batch):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(mm, "open_configured_backend", lambda *a: Broken())
    manager = ModelManager(Settings(checkpoint=checkpoint, device="cpu"), ServiceMetrics())
    with pytest.raises(CheckpointError, match="warm-up forward pass failed: RuntimeError: mat1 and mat2"):
        manager.load()
