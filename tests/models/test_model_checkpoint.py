"""The checkpoint contract: round trip, atomic writes, weights-only loading and clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import warnings
from pathlib import Path

import pytest
import torch
import torchvision

from models import CheckpointError, PreprocessSpec, create_model, load_checkpoint, read_class_index, save_checkpoint
from models.atomic import atomic_torch_save, atomic_write

CLASSES = ["cat", "dog", "bird"]
TINY = {"num_classes": 3, "widths": (4, 8, 16)}


def _resave(path: Path, **changes) -> Path:
    obj = torch.load(path, weights_only=True)
    obj.update(changes)
    torch.save(obj, path)
    return path


def test_round_trip_keeps_outputs_and_metadata(saved_checkpoint: Path, tiny_model, tiny_spec):
    ckpt = load_checkpoint(saved_checkpoint)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), tiny_model(x))
    assert not ckpt.model.training
    assert ckpt.arch == "resnet20"
    assert ckpt.arch_kwargs == {"num_classes": 3, "widths": [4, 8, 16]}
    assert ckpt.classes == CLASSES
    assert ckpt.preprocess == tiny_spec
    assert ckpt.metrics == {"val_top1": 0.5, "epoch": 3}
    assert ckpt.training == {"config": {"lr": 0.1, "milestones": [1, 2]}}
    assert ckpt.sha256 == hashlib.sha256(saved_checkpoint.read_bytes()).hexdigest()
    assert ckpt.meta["format"] == "resnet-checkpoint/1"
    assert ckpt.num_parameters == sum(p.numel() for p in tiny_model.parameters())


def test_class_index_is_written_beside(saved_checkpoint: Path):
    index = saved_checkpoint.with_name("class_indices.json")
    assert json.loads(index.read_text()) == {"0": "cat", "1": "dog", "2": "bird"}
    assert read_class_index(index) == CLASSES
    assert load_checkpoint(saved_checkpoint, class_index=index).classes == CLASSES


def test_saved_file_loads_with_weights_only(saved_checkpoint: Path):
    obj = torch.load(saved_checkpoint, weights_only=True)
    assert obj["format"] == "resnet-checkpoint/1"
    assert set(obj) >= {"arch", "arch_kwargs", "state_dict", "classes", "preprocess", "metrics", "training"}
    assert all(isinstance(v, torch.Tensor) for v in obj["state_dict"].values())


def test_write_leaves_no_temp_files(saved_checkpoint: Path):
    assert sorted(p.name for p in saved_checkpoint.parent.iterdir()) == ["class_indices.json", "model.pt"]


def test_failed_write_keeps_the_old_file(tmp_path: Path):
    path = atomic_torch_save({"v": torch.ones(3)}, tmp_path / "x.pt")
    before = path.read_bytes()

    def half_then_crash(f):
        f.write(b"garbage that must never be seen")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, half_then_crash)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_unsaveable_metadata_is_refused_before_writing(tmp_path: Path, tiny_model, tiny_spec):
    with pytest.raises(TypeError, match="plain values"):
        save_checkpoint(tmp_path / "m.pt", tiny_model, arch="resnet20", arch_kwargs=TINY, classes=CLASSES,
                        preprocess=tiny_spec, metrics={"bad": object()})
    assert not list(tmp_path.iterdir())


def test_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_are_not_a_checkpoint_rather_than_refused(tmp_path: Path, seed: int):
    path = tmp_path / "junk.pt"
    path.write_bytes(random.Random(seed).randbytes(2000))
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a (readable )?PyTorch checkpoint") as e:
        load_checkpoint(path)
    assert "refused" not in str(e.value) and "unsafe" not in str(e.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"PK\x03\x04 not really a zip", b"hello, I am a text file\n", pickle.dumps({"plain": [1, 2.0]})],
    ids=["empty", "fake-zip", "text", "plain-pickle"],
)
def test_not_a_checkpoint(tmp_path: Path, content: bytes):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a (readable )?PyTorch checkpoint") as e:
        load_checkpoint(path)
    assert "refused" not in str(e.value)


def test_truncated_checkpoint(saved_checkpoint: Path):
    data = saved_checkpoint.read_bytes()
    saved_checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(saved_checkpoint)


def test_unknown_format_version(saved_checkpoint: Path):
    _resave(saved_checkpoint, format="resnet-checkpoint/99")
    with pytest.raises(CheckpointError, match=r"unsupported checkpoint format 'resnet-checkpoint/99'"):
        load_checkpoint(saved_checkpoint)


def test_dict_without_format_is_not_a_checkpoint(tmp_path: Path):
    torch.save({"hello": "world"}, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match="no 'format' key"):
        load_checkpoint(tmp_path / "d.pt")


def test_unknown_architecture(saved_checkpoint: Path):
    _resave(saved_checkpoint, arch="resnet9000")
    with pytest.raises(CheckpointError, match=r"unknown architecture 'resnet9000'.*resnet18"):
        load_checkpoint(saved_checkpoint)


def test_class_count_not_matching_the_final_layer(saved_checkpoint: Path):
    _resave(saved_checkpoint, classes=["cat", "dog"])
    with pytest.raises(CheckpointError, match="final layer has 3 outputs but there are 2 classes"):
        load_checkpoint(saved_checkpoint)


def test_weights_that_do_not_fit(saved_checkpoint: Path):
    _resave(saved_checkpoint, arch_kwargs={"num_classes": 3})  # full widths: 16/32/64 channels
    with pytest.raises(CheckpointError, match="weights do not fit resnet20"):
        load_checkpoint(saved_checkpoint)


def test_class_index_that_disagrees(saved_checkpoint: Path, tmp_path: Path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"0": "cat", "1": "horse", "2": "bird"}))
    with pytest.raises(CheckpointError, match=r"disagrees.*first difference at index 1"):
        load_checkpoint(saved_checkpoint, class_index=other)


@pytest.mark.parametrize(
    ("content", "message"),
    [('{"0": "a", "2": "b"}', "no gaps"), ('{"x": "a"}', "integers"), ("not json", "JSON"), ("[1, 2]", "map")],
)
def test_bad_class_index_files(tmp_path: Path, content: str, message: str):
    path = tmp_path / "idx.json"
    path.write_text(content)
    with pytest.raises(CheckpointError, match=message):
        read_class_index(path)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle", "pickle-protocol-0"])
def test_code_in_the_pickle_is_refused_without_running_it(tmp_path: Path, writer: str):
    marker = tmp_path / "pwned"
    payload = {"format": "resnet-checkpoint/1", "arch": "resnet20", "state_dict": _Payload(marker)}
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=0 if writer.endswith("0") else None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the pickle protocol of a plain pickle
        with pytest.raises(CheckpointError, match=r"evil\.pt: refused to load unsafe content.*(posix|os)\.system"):
            load_checkpoint(path)
    assert not marker.exists()
    # the payload is real: unpickling it unsafely would have run it
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


@pytest.fixture
def torchvision_state(tmp_path: Path) -> tuple[dict, Path]:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=3).eval()
    index = tmp_path / "classes.json"
    index.write_text(json.dumps({"0": "a", "1": "b", "2": "c"}))
    return reference, index


@pytest.mark.parametrize("prefix", ["", "module."])
def test_bare_torchvision_state_dict_loads(tmp_path: Path, torchvision_state, prefix: str):
    reference, index = torchvision_state
    path = tmp_path / "resnet18.pth"
    torch.save({prefix + k: v for k, v in reference.state_dict().items()}, path)
    ckpt = load_checkpoint(path, arch="resnet18", class_index=index)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ckpt.model(x) - reference(x)).abs().max() < 1e-5
    assert ckpt.classes == ["a", "b", "c"]
    assert ckpt.preprocess == PreprocessSpec()  # ImageNet defaults: 256 -> 224, ImageNet mean/std
    assert ckpt.meta["format"] == "torchvision-state-dict"


def test_bare_state_dict_needs_arch_and_class_index(tmp_path: Path, torchvision_state):
    reference, _ = torchvision_state
    torch.save(reference.state_dict(), tmp_path / "r.pth")
    with pytest.raises(CheckpointError, match="needs an architecture and a class index"):
        load_checkpoint(tmp_path / "r.pth")


def test_bare_state_dict_with_the_wrong_arch(tmp_path: Path, torchvision_state):
    reference, index = torchvision_state
    torch.save(reference.state_dict(), tmp_path / "r.pth")
    with pytest.raises(CheckpointError, match="do not fit resnet34"):
        load_checkpoint(tmp_path / "r.pth", arch="resnet34", class_index=index)


def test_checkpoint_of_an_option_model_round_trips(tmp_path: Path):
    model = create_model("resnet18", num_classes=2, small_input=True, in_channels=1).eval()
    spec = PreprocessSpec(resize=28, crop=28, mean=(0.5,), std=(0.5,), color_mode="L")
    kwargs = {"num_classes": 2, "small_input": True, "in_channels": 1}
    path = save_checkpoint(tmp_path / "m.pt", model, arch="resnet18", arch_kwargs=kwargs, classes=["x", "y"],
                           preprocess=spec.to_dict())
    ckpt = load_checkpoint(path)
    assert ckpt.preprocess.color_mode == "L"
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model(x))


def test_only_models_reads_torch_files():
    """The checkpoint format is `models/`'s knowledge: no other product package calls `torch.load`."""
    root = Path(__file__).resolve().parents[2]
    packages = [d for d in root.iterdir() if (d / "__init__.py").exists() and d.name not in ("models", "tests")]
    offenders = [str(p.relative_to(root)) for d in packages for p in d.rglob("*.py") if "torch.load(" in p.read_text()]
    assert packages and offenders == []
