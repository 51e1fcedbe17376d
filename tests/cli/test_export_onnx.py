"""`models.onnx_export`: the ONNX model computes what the checkpoint computes and carries its metadata."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cli.export import main
from models.onnx_export import INPUT_NAME, export_onnx, read_onnx_metadata

# ORT fuses BatchNorm into the convolutions and may sum in another order: float32 rounding only.
ATOL = 1e-4


def ort_logits(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: x.numpy()})[0]


@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_logits_match_torch(name, batch, request):
    ckpt, path = request.getfixturevalue(f"{name}_ckpt"), request.getfixturevalue(f"{name}_onnx")
    spec = ckpt.preprocess
    x = torch.randn(batch, spec.channels, spec.crop, spec.crop, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        expected = ckpt.model(x).numpy()
    got = ort_logits(path, x)
    assert got.shape == (batch, len(ckpt.classes))
    assert np.abs(got - expected).max() <= ATOL
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_one_export_serves_every_batch_size(resnet20_ckpt, resnet20_onnx):
    x = torch.randn(8, 1, 28, 28)
    whole = ort_logits(resnet20_onnx, x)
    for n in (1, 3, 5):
        assert np.allclose(ort_logits(resnet20_onnx, x[:n]), whole[:n], atol=ATOL)


def test_static_batch_export_has_batch_one(resnet20_ckpt, tmp_path):
    path = export_onnx(resnet20_ckpt, tmp_path / "static.onnx", dynamic_batch=False)
    shape = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    assert shape == [1, 1, 28, 28]


def test_metadata_round_trips(resnet18_ckpt, resnet18_onnx):
    meta = read_onnx_metadata(resnet18_onnx)
    assert meta["format"] == "resnet-onnx/1"
    assert meta["arch"] == "resnet18"
    assert meta["arch_kwargs"] == resnet18_ckpt.arch_kwargs
    assert meta["classes"] == resnet18_ckpt.classes
    assert meta["preprocess"] == resnet18_ckpt.preprocess.to_dict()
    assert meta["checkpoint_sha256"] == resnet18_ckpt.sha256


def test_export_leaves_the_served_model_alone(resnet20_ckpt, tmp_path):
    before = {k: v.clone() for k, v in resnet20_ckpt.model.state_dict().items()}
    export_onnx(resnet20_ckpt, tmp_path / "m.onnx")
    assert not resnet20_ckpt.model.training
    after = resnet20_ckpt.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cli_writes_onnx_beside_the_checkpoint(resnet20_ckpt):
    main([str(resnet20_ckpt.path)])
    out = resnet20_ckpt.path.with_suffix(".onnx")
    assert read_onnx_metadata(out)["checkpoint_sha256"] == resnet20_ckpt.sha256


def test_cli_out_and_bad_checkpoint(resnet20_ckpt, tmp_path, capsys):
    main([str(resnet20_ckpt.path), "-o", str(tmp_path / "x" / "y.onnx")])
    assert (tmp_path / "x" / "y.onnx").is_file()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(bad)])
    assert exc.value.code == 1
    assert re.match(r"^resnet-export: error: .*bad\.pt: ", capsys.readouterr().err)


def test_resnet_export_console_script(resnet20_ckpt, tmp_path):
    script = shutil.which("resnet-export", path=str(Path(sys.executable).parent))
    assert script, "resnet-export is not installed beside this Python (pip install -e '.[dev]')"
    out = tmp_path / "cli.onnx"
    subprocess.run([script, str(resnet20_ckpt.path), "-o", str(out)], check=True, capture_output=True)
    assert read_onnx_metadata(out)["checkpoint_sha256"] == resnet20_ckpt.sha256


def test_importing_models_does_not_import_onnx():
    code = "import sys, models; bad = {'onnx', 'onnxruntime', 'onnxscript'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
