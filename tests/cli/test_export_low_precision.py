"""`resnet-export --precision bf16|int8`: the accuracy guard, the artifact's record, and serving it.

The default model (weights/model.pt) and its shipped int8 artifact are real, so their accuracy is real too;
the tiny random models only show that every precision exports and runs.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.core.config import Settings
from cli.export import main as export_main
from devkit.asgi import every_endpoint, serve
from devkit.images import encode, image_bytes
from models import load_checkpoint, load_image_tensor
from models.backends import open_backend, serving_accuracy
from models.errors import CheckpointError
from models.onnx_export import read_onnx_metadata

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "weights" / "model.pt"
SHIPPED_INT8 = ROOT / "weights" / "model.int8.onnx"
EXAMPLES = sorted((ROOT / "examples").glob("*.png"))
RUNTIMES = ("onnxruntime", "openvino")  # the ONNX runtimes; both are installed with the dev extras


@pytest.fixture(scope="module")
def default_ckpt():
    return load_checkpoint(DEFAULT)


def example_folder(root: Path, classes: list[str], *, train_from=None) -> Path:
    """An ImageFolder: val/ holds examples/ (one real image per class); train/ a copy, or `train_from(cls)` images.

    T-shirt/top is left out: a folder name cannot hold its "/" (the folder may hold a subset of the classes).
    """
    by_label = {cls: ROOT / "examples" / f"{re.sub(r'[^a-z0-9]+', '-', cls.lower()).strip('-')}.png"
                for cls in classes if "/" not in cls}
    for split in ("train", "val"):
        for cls, src in by_label.items():
            folder = root / split / cls
            folder.mkdir(parents=True)
            if split == "train" and train_from is not None:
                (folder / "x.png").write_bytes(train_from(cls))
            else:
                shutil.copy(src, folder / src.name)
    return root


def example_batch(ckpt) -> torch.Tensor:
    return torch.stack([load_image_tensor(p.read_bytes(), ckpt.preprocess) for p in EXAMPLES])


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_every_precision_exports_a_tiny_model_and_runs(precision, resnet20_ckpt, tmp_path):
    data = tmp_path / "data"
    for split in ("train", "val"):
        for i, cls in enumerate(resnet20_ckpt.classes):
            (data / split / cls).mkdir(parents=True)
            (data / split / cls / "a.png").write_bytes(image_bytes("PNG", (28, 28), seed=i, mode="L"))
    out = tmp_path / f"m.{precision}.onnx"
    export_main([str(resnet20_ckpt.path), "--precision", precision, "--calibration-data", str(data),
                 "--max-accuracy-drop", "100", "-o", str(out)])
    meta = read_onnx_metadata(out)
    assert meta["precision"] == precision and meta["checkpoint_sha256"] == resnet20_ckpt.sha256
    backend = open_backend(resnet20_ckpt, artifact=out, threads=1, device="cpu")
    assert backend.precision == precision
    assert backend.predict(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    if precision == "fp32":
        assert "accuracy_by_runtime" not in meta and backend.accuracy_by_runtime == {}
    else:  # scored on every installed runtime that can run it (both are installed here), the serving one included
        assert set(meta["accuracy_by_runtime"]) == ({"openvino"} if precision == "bf16" else set(RUNTIMES))
        assert backend.name in meta["accuracy_by_runtime"]
        for acc in meta["accuracy_by_runtime"].values():
            assert set(acc) == {"top1_fp32", "top1", "agreement", "eval_size"}
            assert acc["eval_size"] == 10 and 0 <= acc["agreement"] <= 1
    if precision == "int8":
        assert meta["calibration"]["size"] == 10


def refused(capsys, argv: list[str]) -> str:
    """resnet-export's one line on stderr when it exits 1 (models/cli.py's convention)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        export_main(argv)
    assert exc.value.code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def test_the_guard_refuses_an_int8_model_calibrated_on_black_images(default_ckpt, tmp_path, capsys):
    black = encode(Image.new("L", (28, 28)), "PNG")
    data = example_folder(tmp_path / "data", default_ckpt.classes, train_from=lambda cls: black)
    out = tmp_path / "bad.int8.onnx"
    args = [str(DEFAULT), "--precision", "int8", "--calibration-data", str(data), "-o", str(out)]
    message = refused(capsys, args)
    assert message.startswith("resnet-export: error: int8 loses too much accuracy on openvino: top-1 fp32 100.00%, "
                              "int8 ")
    assert "allowed drop 0.5 points" in message and "nothing written" in message
    assert not out.exists()
    export_main([*args, "--force"])  # written anyway, with the bad numbers on record
    for acc in read_onnx_metadata(out)["accuracy_by_runtime"].values():
        assert acc["top1_fp32"] == 1.0 and acc["top1"] < 0.995 and acc["eval_size"] == 9


def test_a_threshold_below_zero_refuses_even_a_lossless_model(default_ckpt, tmp_path, capsys):
    data = example_folder(tmp_path / "data", default_ckpt.classes)
    line = refused(capsys, [str(DEFAULT), "--precision", "bf16", "--calibration-data", str(data),
                            "--max-accuracy-drop", "-1", "-o", str(tmp_path / "x.onnx")])
    assert re.search(r"bf16 loses too much accuracy on openvino: .*drop 0\.00 points.*allowed drop -1 ", line)


def test_the_shipped_int8_artifact_belongs_to_the_default_model_and_passed_the_guard(default_ckpt):
    meta = read_onnx_metadata(SHIPPED_INT8)
    assert meta["precision"] == "int8" and meta["checkpoint_sha256"] == default_ckpt.sha256
    records = meta["accuracy_by_runtime"]
    assert set(records) == set(RUNTIMES)  # recorded on the runtime that serves it, whichever of the two that is
    for acc in records.values():
        assert acc["eval_size"] >= 5000 and acc["agreement"] >= 0.99
        assert 100 * (acc["top1_fp32"] - acc["top1"]) <= 0.3


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_int8_scores_are_within_tolerance_of_fp32_on_the_examples(runtime, default_ckpt):
    x = example_batch(default_ckpt)
    with torch.inference_mode():
        fp32 = torch.softmax(default_ckpt.model.eval()(x), 1)
    backend = open_backend(default_ckpt, artifact=SHIPPED_INT8, runtime=runtime, threads=1, device="cpu")
    int8 = torch.softmax(backend.predict(x), 1)
    assert torch.equal(int8.argmax(1), fp32.argmax(1))
    assert (int8 - fp32).abs().max().item() <= 0.05


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_endpoint_on_the_int8_artifact(runtime, default_ckpt):
    images = [p.read_bytes() for p in EXAMPLES]
    settings = Settings(checkpoint=DEFAULT, onnx_path=SHIPPED_INT8, backend=runtime, device="cpu", torch_threads=1,
                        max_batch_delay_ms=2000, log_level="warning", api_key="k")
    got = asyncio.run(every_endpoint(images, settings, reload_to=str(DEFAULT)))
    assert got["ready"] == 200
    assert [a["predictions"][0]["index"] for a in got["single"]] == expected_indices(default_ckpt)
    assert [r["predictions"][0]["index"] for r in got["batch"]] == expected_indices(default_ckpt)
    assert got["batch_passes"] == 1
    info = got["info"]
    assert info["precision"] == "int8" and info["backend"] == runtime
    assert info["export_accuracy"] == read_onnx_metadata(SHIPPED_INT8)["accuracy_by_runtime"][runtime]
    assert info["accuracy_checked_on"] == sorted(RUNTIMES)
    assert got["feature_maps"][:2] == (200, "image/png")
    assert 'precision="int8"' in got["metrics"]
    assert got["reloaded"]["precision"] == "int8"  # the configured checkpoint again: the artifact is re-read


def expected_indices(ckpt) -> list[int]:
    with torch.inference_mode():
        return ckpt.model.eval()(example_batch(ckpt)).argmax(1).tolist()


def test_oip_infer_on_the_int8_artifact(default_ckpt):
    async def infer() -> dict:
        settings = Settings(checkpoint=DEFAULT, onnx_path=SHIPPED_INT8, backend="onnxruntime", device="cpu",
                            torch_threads=1, log_level="warning")
        x = example_batch(default_ckpt)
        body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                            "data": x.flatten().tolist()}]}
        async with serve(settings) as (_, client):
            r = await client.post("/v2/models/resnet/infer", json=body)
            assert r.status_code == 200, r.text
            return r.json()

    out = asyncio.run(infer())
    logits = np.array(out["outputs"][0]["data"]).reshape(len(EXAMPLES), -1)
    assert logits.argmax(1).tolist() == expected_indices(default_ckpt)


def test_a_bf16_artifact_is_refused_by_onnxruntime_and_picked_for_openvino(default_ckpt, tmp_path):
    from models.onnx_export import export_onnx_bytes, with_metadata

    path = tmp_path / "m.bf16.onnx"
    path.write_bytes(with_metadata(export_onnx_bytes(default_ckpt), {"precision": "bf16"}))
    with pytest.raises(CheckpointError, match="a bf16 artifact runs on OpenVINO"):
        open_backend(default_ckpt, runtime="onnxruntime", artifact=str(path), threads=1, device="cpu")
    backend = open_backend(default_ckpt, artifact=path, threads=1, device="cpu")
    assert (backend.name, backend.precision) == ("openvino", "bf16")
    with torch.inference_mode():
        fp32 = torch.softmax(default_ckpt.model.eval()(example_batch(default_ckpt)), 1)
    assert (torch.softmax(backend.predict(example_batch(default_ckpt)), 1) - fp32).abs().max().item() <= 0.05


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_artifact_of_another_checkpoint_is_refused(runtime, resnet20_ckpt):
    with pytest.raises(CheckpointError, match=r"model\.int8\.onnx: ONNX model was exported from checkpoint sha256 "):
        open_backend(resnet20_ckpt, artifact=SHIPPED_INT8, runtime=runtime, threads=1, device="cpu")


def test_auto_runs_low_precision_artifacts_on_openvino_and_fp32_on_onnxruntime(default_ckpt, tmp_path):
    from app.services.model_manager import open_configured_backend
    from models.onnx_export import export_onnx

    fp32 = export_onnx(default_ckpt, tmp_path / "m.onnx")
    cpu = torch.device("cpu")
    for path, expected in ((SHIPPED_INT8, ("openvino", "int8")), (fp32, ("onnxruntime", "fp32"))):
        settings = Settings(checkpoint=DEFAULT, onnx_path=path, torch_threads=1)
        backend = open_configured_backend(settings, default_ckpt, cpu)
        assert (backend.name, backend.precision) == expected


def test_serving_on_a_runtime_the_export_did_not_check_says_so(default_ckpt, tmp_path, caplog):
    """An int8 file checked only on ONNX Runtime (as written before records were kept per runtime), served on
    OpenVINO: one warning at open, no export_accuracy for it, and the runtime that was checked is named."""
    from models.onnx_export import with_metadata

    legacy = read_onnx_metadata(SHIPPED_INT8)["accuracy_by_runtime"]["onnxruntime"]
    path = tmp_path / "legacy.int8.onnx"
    path.write_bytes(with_metadata(SHIPPED_INT8.read_bytes(), {"accuracy_by_runtime": {"onnxruntime": legacy}}))
    with caplog.at_level("WARNING", logger="models.backends"):
        backend = open_backend(default_ckpt, artifact=path, runtime="openvino", threads=1, device="cpu")
    assert serving_accuracy(backend) is None and list(backend.accuracy_by_runtime) == ["onnxruntime"]
    warned = [r.getMessage() for r in caplog.records if "not checked" in r.getMessage()]
    assert warned == ["the int8 artifact runs on openvino, where its accuracy was not checked (checked on: "
                      "onnxruntime); run resnet-export with openvino installed to record it"]


def test_resnet_predict_runs_the_int8_artifact_like_the_service(default_ckpt, capsys):
    import json

    from cli.predict import main as predict_main

    predict_main([str(SHIPPED_INT8), *map(str, EXAMPLES), "--json", "--threads", "1"])
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["predictions"][0]["index"] for r in results] == expected_indices(default_ckpt)


def test_export_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        export_main([str(DEFAULT), "--precision", "int8", "--calibration-size", "0"])
    assert "--calibration-size: must be at least 1, not 0" in capsys.readouterr().err
    unreadable = tmp_path / "data" / "train" / "Bag"
    unreadable.mkdir(parents=True)
    (unreadable / "x.png").write_bytes(b"not a png")
    line = refused(capsys, [str(DEFAULT), "--precision", "int8", "--calibration-data", str(tmp_path / "data"),
                            "-o", str(tmp_path / "x.onnx")])
    assert re.match(r"^resnet-export: error: int8 calibration on .*train failed: ValueError: ", line)
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_int8_of_the_default_model_meets_the_target_on_the_test_set(tmp_path):
    """The issue's target, measured again by the current code: full test set, within 0.3 points, agreement >= 99 %."""
    out = tmp_path / "test.int8.onnx"
    export_main([str(DEFAULT), "--precision", "int8", "--eval-split", "test", "--max-accuracy-drop", "0.3",
                 "-o", str(out)])
    for acc in read_onnx_metadata(out)["accuracy_by_runtime"].values():
        assert acc["eval_size"] == 10_000 and acc["agreement"] >= 0.99
        assert 100 * (acc["top1_fp32"] - acc["top1"]) <= 0.3
