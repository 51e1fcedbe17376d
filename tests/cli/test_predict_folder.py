"""`resnet-predict` over folders: stable order, batched DataLoader, CSV / JSONL files, ONNX artifacts, failures."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli import predict
from devkit.checkpoints import CLASSES, make_checkpoint
from devkit.images import image_bytes
from devkit.server import REPO
from models import create_model, load_checkpoint, load_image_tensor, write_class_index
from models.postprocess import top_k


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder tree with images in several formats, a non-image file and a broken image."""
    root = tmp_path / "photos"
    files = {"b.png": "PNG", "A.JPG": "JPEG", "sub/a.jpeg": "JPEG", "sub/deeper/c.webp": "WEBP", "z.bmp": "BMP"}
    for i, (name, fmt) in enumerate(files.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(image_bytes(fmt, size=(50 + i, 40), seed=i))
    (root / "notes.txt").write_text("not an image, not listed")
    (root / "sub" / "broken.png").write_bytes(b"these bytes are no image")
    return root


def expected_order(root: Path) -> list[str]:
    """Sorted paths of the folder (Path order: part by part, upper case first), as resnet-predict lists them."""
    return [str(root / n) for n in ("A.JPG", "b.png", "sub/a.jpeg", "sub/broken.png", "sub/deeper/c.webp", "z.bmp")]


def run(argv: list[str]) -> int:
    """resnet-predict's exit status: main's return value, or the code it exits with (usage errors, failures)."""
    try:
        return predict.main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def run_command(argv: list[str]) -> int:
    """resnet-predict as its own process, as users run it. DataLoader workers install torch's SIGCHLD handler in the
    process that starts them, for good; in the test process, where other tests have loaded OpenVINO, a later child's
    exit then crashes it (SIGSEGV), so commands with --workers run here."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "cli.predict", *argv], cwd=REPO, env=env, capture_output=True,
                          timeout=300).returncode


def reference(ckpt_path: Path, path: str, k: int):
    """The prediction made by hand: shared preprocessing, the checkpoint's model, the shared top_k."""
    ckpt = load_checkpoint(ckpt_path)
    with torch.inference_mode():
        return top_k(ckpt.model(load_image_tensor(Path(path).read_bytes(), ckpt.preprocess)[None]), ckpt.classes, k)[0]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_folder_and_files_to_csv_in_stable_order(checkpoint, photos, tmp_path, capsys):
    extra = tmp_path / "extra.png"
    extra.write_bytes(image_bytes("PNG", seed=9))
    out = tmp_path / "preds.csv"
    code = run([str(checkpoint), str(extra), str(photos), "--out", str(out), "--top-k", "2", "--batch-size", "4",
                "--no-progress"])
    assert code == 1  # one image failed; every other one was still predicted
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label_1", "score_1", "label_2", "score_2", "error"]
    assert [r[0] for r in rows[1:]] == [str(extra), *expected_order(photos)]
    by_path = {r[0]: r for r in rows[1:]}
    broken = by_path[str(photos / "sub" / "broken.png")]
    assert broken[1:5] == ["", "", "", ""] and broken[5] == "not a recognised image format"
    for path, row in by_path.items():
        if path != broken[0]:
            ref = reference(checkpoint, path, 2)
            assert row[1::2][:2] == [p["label"] for p in ref] and row[5] == ""
            assert [float(s) for s in row[2:5:2]] == pytest.approx([p["score"] for p in ref], abs=2e-6)
    err = capsys.readouterr().err
    assert f"resnet-predict: {broken[0]}: cannot read image: not a recognised image format" in err
    assert "wrote 7 rows" in err and "(1 unreadable)" in err


def test_jsonl_rows_are_the_json_results_plus_errors(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    assert run([str(checkpoint), str(photos), "--out", str(out), "--top-k", "3"]) == 1
    rows = read_jsonl(out)
    assert [r["path"] for r in rows] == expected_order(photos)
    assert all(set(r) == {"path", "predictions", "error"} for r in rows)
    assert [r["error"] is None for r in rows] == [True, True, True, False, True, True]
    capsys.readouterr()
    assert run([str(checkpoint), str(photos), "--json", "--top-k", "3"]) == 1
    results = json.loads(capsys.readouterr().out)["results"]
    assert results == [{"path": r["path"], "predictions": r["predictions"]} for r in rows if r["error"] is None]
    assert [set(p) for p in results[0]["predictions"]] == [{"label", "index", "score"}] * 3


def test_batch_size_and_workers_do_not_change_the_rows(checkpoint, photos, tmp_path):
    outputs = []
    for i, extra in enumerate((["--batch-size", "1"], ["--batch-size", "64"], ["--batch-size", "2", "--workers", "2"])):
        out = tmp_path / f"p{i}.jsonl"
        assert run_command([str(checkpoint), str(photos), "--out", str(out), *extra]) == 1
        outputs.append(read_jsonl(out))
    for rows in outputs[1:]:
        assert [(r["path"], r["error"]) for r in rows] == [(r["path"], r["error"]) for r in outputs[0]]
        for a, b in zip(rows, outputs[0], strict=True):
            assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
            assert [p["score"] for p in a["predictions"]] == pytest.approx([p["score"] for p in b["predictions"]],
                                                                           abs=1e-5)


def test_all_readable_exits_0_and_the_progress_bar_goes_to_stderr(checkpoint, photos, tmp_path, capsys):
    (photos / "sub" / "broken.png").unlink()
    out = tmp_path / "preds.csv"
    assert run([str(checkpoint), str(photos), "--out", str(out), "--progress"]) == 0
    captured = capsys.readouterr()
    assert "5/5" in captured.err and captured.out == ""
    assert run([str(checkpoint), str(photos), "--out", str(out), "--no-progress"]) == 0
    assert "5/5" not in capsys.readouterr().err


def test_an_empty_folder_is_reported_and_fails_the_run(checkpoint, photos, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    out = tmp_path / "preds.jsonl"
    assert run([str(checkpoint), str(empty), str(photos / "b.png"), "--out", str(out)]) == 1
    assert [r["path"] for r in read_jsonl(out)] == [str(photos / "b.png")]
    assert f"resnet-predict: {empty}: no images" in capsys.readouterr().err


def test_a_bare_state_dict_with_arch_and_class_index(photos, tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3).eval()
    torch.save(model.state_dict(), tmp_path / "tutorial.pth")
    index = write_class_index(tmp_path / "classes.json", CLASSES)
    out = tmp_path / "preds.jsonl"
    assert run([str(tmp_path / "tutorial.pth"), str(photos / "b.png"), "--arch", "resnet18", "--class-index",
                str(index), "--out", str(out), "--top-k", "1"]) == 0
    ckpt = load_checkpoint(tmp_path / "tutorial.pth", arch="resnet18", class_index=index)
    with torch.inference_mode():
        logits = ckpt.model(load_image_tensor((photos / "b.png").read_bytes(), ckpt.preprocess)[None])
    (row,) = read_jsonl(out)
    assert row["predictions"][0]["index"] == int(logits.argmax())


@pytest.fixture
def onnx_file(checkpoint, tmp_path) -> Path:
    pytest.importorskip("onnxruntime")
    from models.onnx_export import export_onnx

    return export_onnx(load_checkpoint(checkpoint), tmp_path / "model.onnx")


def test_an_onnx_artifact_carries_its_classes_and_preprocessing(checkpoint, onnx_file, photos, tmp_path):
    torch_out, onnx_out = tmp_path / "torch.jsonl", tmp_path / "onnx.jsonl"
    assert run([str(checkpoint), str(photos), "--out", str(torch_out), "--top-k", "3"]) == 1
    assert run([str(onnx_file), str(photos), "--out", str(onnx_out), "--top-k", "3"]) == 1
    with_ckpt = tmp_path / "with_ckpt.jsonl"
    assert run([str(onnx_file), str(photos), "--from-checkpoint", str(checkpoint), "--out", str(with_ckpt),
                "--top-k", "3"]) == 1
    expected = read_jsonl(torch_out)
    for rows in (read_jsonl(onnx_out), read_jsonl(with_ckpt)):
        assert [(r["path"], r["error"]) for r in rows] == [(r["path"], r["error"]) for r in expected]
        for a, b in zip(rows, expected, strict=True):
            assert [(p["label"], p["index"]) for p in a["predictions"]] == [(p["label"], p["index"])
                                                                            for p in b["predictions"]]
            assert [p["score"] for p in a["predictions"]] == pytest.approx([p["score"] for p in b["predictions"]],
                                                                           abs=1e-4)


def test_explain_with_an_onnx_file_is_refused_before_predicting(onnx_file, photos, tmp_path, capsys):
    out = tmp_path / "heatmaps"
    assert run([str(onnx_file), str(photos), "--explain", str(out), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing was predicted first
    assert captured.err.strip() == ("resnet-predict: error: --explain needs a torch checkpoint (an ONNX file has no "
                                    "gradients to follow)")
    assert not out.exists()


def test_an_onnx_file_from_another_checkpoint_is_refused(onnx_file, photos, tmp_path, capsys):
    other = make_checkpoint(tmp_path / "other" / "model.pt", seed=5)
    assert run([str(onnx_file), str(photos), "--from-checkpoint", str(other)]) == 1
    err = capsys.readouterr().err
    assert "resnet-predict: error:" in err and "exported from checkpoint sha256" in err and "model.pt" in err


def test_an_onnx_file_without_our_metadata_is_refused(onnx_file, photos, tmp_path, capsys):
    import onnx

    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(proto, str(foreign))
    assert run([str(foreign), str(photos)]) == 1
    assert "not written by resnet-export" in capsys.readouterr().err


def test_bad_out_extension_and_out_with_json_are_usage_errors(checkpoint, photos, tmp_path, capsys):
    assert run([str(checkpoint), str(photos), "--out", str(tmp_path / "preds.txt")]) == 2
    assert "must end with .csv or .jsonl" in capsys.readouterr().err
    assert run([str(checkpoint), str(photos), "--out", str(tmp_path / "p.csv"), "--json"]) == 2
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_device_cuda_without_cuda_is_a_clear_error(checkpoint, photos, capsys):
    assert run([str(checkpoint), str(photos), "--device", "cuda"]) == 1
    assert "resnet-predict: error: --device cuda: CUDA is not available" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_predictions(checkpoint, photos, tmp_path):
    cpu, cuda = tmp_path / "cpu.jsonl", tmp_path / "cuda.jsonl"
    assert run([str(checkpoint), str(photos), "--out", str(cpu), "--device", "cpu"]) == 1
    assert run([str(checkpoint), str(photos), "--out", str(cuda), "--device", "cuda", "--workers", "2"]) == 1
    for a, b in zip(read_jsonl(cuda), read_jsonl(cpu), strict=True):
        assert a["path"] == b["path"] and [p["index"] for p in a["predictions"]] == [p["index"]
                                                                                   for p in b["predictions"]]
        assert [p["score"] for p in a["predictions"]] == pytest.approx([p["score"] for p in b["predictions"]],
                                                                       abs=1e-3)
