"""A short real run: it learns, writes what the service loads, and `resnet-eval` / `resnet-predict` agree with it."""

from __future__ import annotations

import json
import shutil
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from cli import evaluate, predict
from models import load_checkpoint, load_image_tensor, read_class_index
from models.errors import ConfigError
from tests.training.tinydata import CLASSES, TINY_ARGS
from training import outputs, train
from training.config import parse_config
from training.data import FASHION_MNIST_CLASSES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_two_epochs_learn_the_colours(trained_run):
    rows = [json.loads(line) for line in (trained_run["out"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["val_count"] == 30
    assert trained_run["metrics"]["best_val_top1"] > 0.6  # chance is 1/3
    for r in rows:
        assert {"train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "lr", "images_per_s"} <= set(r)


def test_checkpoint_is_accepted_by_the_loader(trained_run):
    out = trained_run["out"]
    ckpt = load_checkpoint(out / "model.pt", class_index=out / "class_indices.json")
    assert ckpt.classes == CLASSES == read_class_index(out / "class_indices.json")
    assert ckpt.arch == "resnet20" and ckpt.arch_kwargs["widths"] == [4, 8, 16]
    assert (ckpt.preprocess.crop, ckpt.preprocess.resize) == (32, 32)
    assert ckpt.metrics["val_top1"] == trained_run["metrics"]["val_top1"]
    assert ckpt.training["config"]["epochs"] == 2 and ckpt.training["world_size"] == 1
    assert "resume" not in ckpt.meta
    best = load_checkpoint(out / "best.pt")
    assert best.metrics["val_top1"] == trained_run["metrics"]["best_val_top1"]


def test_every_file_written_loads_with_weights_only(trained_run):
    out = trained_run["out"]
    written = sorted(p.name for p in out.iterdir())
    assert {"last.pt", "best.pt", "model.pt", "class_indices.json", "metrics.jsonl", "loss.png", "accuracy.png",
            "lr.png"} <= set(written)
    assert not [n for n in written if n.endswith(".tmp") or n.startswith(".")]  # no leftovers of atomic writes
    for pt in out.glob("*.pt"):
        obj = torch.load(pt, map_location="cpu", weights_only=True)
        assert obj["format"] == "resnet-checkpoint/1"
        assert isinstance(obj["training"]["config"], dict)
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["resume"]["epoch"] == 2 and set(last["resume"]) >= {"model", "optimizer", "scaler", "rng", "step"}
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC


def test_resnet_eval_matches_load_checkpoint_and_shared_preprocessing(trained_run, tmp_path, capsys):
    out, data = trained_run["out"], trained_run["data"]
    evaluate.main([str(out / "model.pt"), str(data), "--out", str(tmp_path), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "top-1" in printed and "top-5" in printed and "per-class accuracy" in printed
    for c in CLASSES:
        assert c in printed
    result = json.loads((tmp_path / "eval.json").read_text())
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == PNG_MAGIC
    assert result["count"] == 30 and sum(map(sum, result["confusion"])) == 30
    # the training loop's own validation of the final weights saw the same 30 images the same way
    assert result["top1"] == pytest.approx(trained_run["metrics"]["val_top1"], abs=1e-9)
    ckpt = load_checkpoint(out / "model.pt")
    by_path = {p["id"]: p for p in result["predictions"]}
    assert len(by_path) == 30
    with torch.inference_mode():
        for path in sorted((data / "val").rglob("*.png")):
            logits = ckpt.model(load_image_tensor(path.read_bytes(), ckpt.preprocess)[None])
            score, index = torch.softmax(logits, 1).max(1)
            assert by_path[str(path)]["prediction"] == int(index)
            assert by_path[str(path)]["score"] == pytest.approx(float(score), abs=1e-5)
            assert by_path[str(path)]["label"] == CLASSES.index(path.parent.name)
    per_class = result["per_class"]
    for i, c in enumerate(CLASSES):
        assert per_class[c]["accuracy"] == pytest.approx(result["confusion"][i][i] / 10)


def test_resnet_eval_skips_unreadable_images_and_reads_a_plain_class_folder(trained_run, tmp_path, capsys):
    root = tmp_path / "flat"
    shutil.copytree(trained_run["data"] / "val", root)  # no val/ inside: the folder itself holds the classes
    bad = root / "red" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    evaluate.main([str(trained_run["out"] / "model.pt"), str(root), "--out", str(tmp_path / "ev")])
    result = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert result["count"] == 30 and result["skipped"] == [str(bad)]
    assert "1 unreadable" in capsys.readouterr().out


def test_resnet_eval_refuses_unknown_classes(trained_run, tmp_path, capsys):
    root = tmp_path / "other"
    shutil.copytree(trained_run["data"] / "val" / "red", root / "purple")
    with pytest.raises(SystemExit) as exc:
        evaluate.main([str(trained_run["out"] / "model.pt"), str(root), "--out", str(tmp_path / "ev")])
    assert exc.value.code == 1
    assert "purple" in capsys.readouterr().err


def test_resnet_predict_json_and_text(trained_run, tmp_path, capsys):
    out, data = trained_run["out"], trained_run["data"]
    images = [data / "val" / "red" / "red_000.png", data / "val" / "blue" / "blue_001.png"]
    missing, broken = tmp_path / "nope.png", tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    status = predict.main([str(out / "model.pt"), *map(str, [images[0], missing, broken, images[1]]), "--json",
                           "--top-k", "2"])
    assert status == 1  # some images failed; the others were still predicted
    captured = capsys.readouterr()
    results = json.loads(captured.out)["results"]
    assert [r["path"] for r in results] == [str(p) for p in images]
    for p in (missing, broken):
        assert f"resnet-predict: {p}: cannot read image:" in captured.err
    ckpt = load_checkpoint(out / "model.pt")
    for r, path in zip(results, images, strict=True):
        assert [set(p) for p in r["predictions"]] == [{"label", "index", "score"}] * 2
        with torch.inference_mode():
            probs = torch.softmax(ckpt.model(load_image_tensor(path.read_bytes(), ckpt.preprocess)[None]), 1)[0]
        top = probs.topk(2)
        assert [p["index"] for p in r["predictions"]] == top.indices.tolist()
        assert [p["label"] for p in r["predictions"]] == [CLASSES[i] for i in top.indices.tolist()]
        assert [p["score"] for p in r["predictions"]] == pytest.approx(top.values.tolist(), abs=1e-6)
    predict.main([str(out / "model.pt"), str(images[0]), "--top-k", "9"])  # k above the class count: all classes
    text = capsys.readouterr().out
    assert text.startswith(f"{images[0]}:") and all(c in text for c in CLASSES) and text.count("%") == 3


def test_console_scripts_point_at_the_mains():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["resnet-train"] == "training.train:main"
    assert scripts["resnet-eval"] == "cli.evaluate:main"
    assert scripts["resnet-predict"] == "cli.predict:main"


def short_run(data: Path, out: Path, *extra: str) -> dict:
    """One epoch of at most 2 steps (give it >= 33 training images for 2 steps of 16)."""
    args = ["--data", str(data), "--out", str(out), "--epochs", "1", "--max-steps-per-epoch", "2", *TINY_ARGS]
    return train.run(parse_config([*args, *extra]))


def test_bf16_autocast_mixing_tricks_ema_and_grad_clipping(image_folder, tmp_path, monkeypatch):
    clip_calls: list[float] = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        total = real_clip(params, max_norm, *args, **kwargs)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        assert after <= max_norm * (1 + 1e-4) + 1e-6 or total <= max_norm
        clip_calls.append(max_norm)
        return total

    monkeypatch.setattr(train.nn.utils, "clip_grad_norm_", spy)
    out = tmp_path / "run"
    metrics = short_run(image_folder(train=12, val=2), out, "--amp", "bf16", "--grad-clip", "0.05", "--ema", "0.9",
                        "--mixup", "0.2", "--cutmix", "1.0", "--ricap", "0.3", "--cutout", "8",
                        "--random-erasing", "0.5", "--label-smoothing", "0.1", "--auto-augment", "trivialaugment",
                        "--optimizer", "adamw", "--schedule", "step")
    assert clip_calls == [0.05, 0.05]
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["training"]["config"]["amp"] == "bf16" and last["resume"]["ema"]["updates"] == 2
    ckpt = load_checkpoint(out / "model.pt")  # the EMA weights, a normal float32 model
    assert all(v.dtype != torch.bfloat16 for v in ckpt.model.state_dict().values())
    ema_weights = last["resume"]["ema"]["weights"]
    assert all(torch.equal(ckpt.model.state_dict()[k], v) for k, v in ema_weights.items())


def test_fashion_mnist_idx_folder_trains_a_grayscale_model(tiny_fashion_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "fm"
    args = ["--data", str(tiny_fashion_dir), "--out", str(out), "--epochs", "1", "--max-steps-per-epoch", "2",
            *TINY_ARGS]
    args[args.index("--image-size") + 1] = "28"
    args[args.index("--resize") + 1] = "28"
    metrics = train.run(parse_config(args))
    assert metrics["val_count"] == 10 and metrics["train_size"] == 50  # validation: held out of the 60 train images
    assert metrics["test_count"] == 30 and set(metrics["test_per_class"]) == set(FASHION_MNIST_CLASSES)
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt.classes == FASHION_MNIST_CLASSES and ckpt.preprocess.color_mode == "L"
    assert ckpt.model.conv1.in_channels == 1
    assert ckpt.metrics["test_top1"] == metrics["test_top1"]
    assert ckpt.metrics["test_split"] == "fashion-mnist test split"
    result = evaluate.evaluate_checkpoint(ckpt, str(tiny_fashion_dir), device="cpu")
    assert result["count"] == 30 and result["top1"] == pytest.approx(metrics["test_top1"], abs=1e-9)
    assert result["split"] == "test"
    held_out = evaluate.evaluate_checkpoint(ckpt, str(tiny_fashion_dir), device="cpu", split="val")
    assert held_out["count"] == 10 and held_out["top1"] == pytest.approx(metrics["val_top1"], abs=1e-9)
    # `resnet-eval CKPT fashion-mnist` reads the test split from the default folder
    monkeypatch.setattr(evaluate, "DEFAULT_FASHION_MNIST_DIR", str(tiny_fashion_dir))
    evaluate.main([str(out / "model.pt"), "fashion-mnist", "--out", str(tmp_path / "ev")])
    assert "fashion-mnist test split" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["top1"] == result["top1"]
    assert (tmp_path / "ev" / "confusion_matrix.png").read_bytes()[:8] == PNG_MAGIC


def test_the_test_split_is_read_only_after_the_last_epoch(tiny_fashion_dir, tmp_path, monkeypatch):
    """best.pt and every per-epoch number come from validation; the test split is evaluated once, at the end."""
    from training import data as data_module

    events: list[str] = []
    real_build, real_save = data_module.build_data, outputs.save_checkpoint

    class Spy(torch.utils.data.Dataset):
        def __init__(self, base):
            self.base = base

        def __len__(self):
            events.append("test")
            return len(self.base)

        def __getitem__(self, i):
            events.append("test")
            return self.base[i]

    def build(*a, **kw):
        bundle = real_build(*a, **kw)
        bundle.test = Spy(bundle.test)
        return bundle

    def save(path, *a, **kw):
        events.append(f"save {Path(path).name} epoch {kw['metrics']['epoch']}")
        return real_save(path, *a, **kw)

    monkeypatch.setattr(train, "build_data", build)
    monkeypatch.setattr(outputs, "save_checkpoint", save)
    args = ["--data", str(tiny_fashion_dir), "--out", str(tmp_path / "fm"), "--epochs", "3",
            "--max-steps-per-epoch", "1", *TINY_ARGS]
    args[args.index("--image-size") + 1] = "28"
    args[args.index("--resize") + 1] = "28"
    metrics = train.run(parse_config(args))
    first_test = events.index("test")
    assert "save last.pt epoch 3" in events[:first_test] and all(e == "test" for e in events[first_test:])
    assert 0 <= metrics["test_top1"] <= 1 and metrics["best_epoch"] in (1, 2, 3)
    best = load_checkpoint(tmp_path / "fm" / "best.pt")
    assert "test_top1" not in best.metrics and best.metrics["val_top1"] == metrics["best_val_top1"]


def test_pretrained_torchvision_weights_with_frozen_backbone(image_folder, tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(weights=None)  # torchvision's own layout, 1000-class head
    torch.nn.init.normal_(tv.bn1.running_mean)  # statistics that differ from a fresh model's
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    out = tmp_path / "ft"
    short_run(image_folder(train=12, val=2), out, "--arch", "resnet18", "--widths", "64", "128", "256", "512",
              "--small-input", "false", "--pretrained", str(path), "--freeze-backbone", "--head-lr-mult", "10",
              "--schedule", "constant", "--weight-decay", "0")
    last = torch.load(out / "last.pt", weights_only=True)
    state, source = last["resume"]["model"], tv.state_dict()
    assert state["fc.weight"].shape == (3, 512)  # a new classifier for the 3 classes
    for k, v in source.items():
        if not k.startswith("fc."):
            assert torch.equal(state[k], v), k  # backbone weights and BN statistics untouched
    groups = last["resume"]["optimizer"]["param_groups"]
    assert sum(len(g["params"]) for g in groups) == 2  # only fc.weight and fc.bias are optimised
    assert all(g["lr"] == pytest.approx(0.1 * 10) for g in groups)  # the head's own learning rate


def test_pretrained_file_that_does_not_fit_is_refused(image_folder, tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(2, 2, 2, 2)}, path)
    with pytest.raises(ConfigError, match="does not fit"):
        short_run(image_folder(train=2, val=1), tmp_path / "x", "--pretrained", str(path))


def test_distillation_from_a_checkpoint_with_linear_lr_scaling(trained_run, image_folder, tmp_path):
    out = tmp_path / "kd"
    short_run(image_folder(train=12, val=2), out, "--kd-teacher", str(trained_run["out"] / "model.pt"),
              "--kd-alpha", "0.7", "--kd-temperature", "2", "--lr-scaling", "linear", "--channels-last",
              "--train-crop", "rrc")
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt.training["config"]["kd_teacher"] == str(trained_run["out"] / "model.pt")
    assert ckpt.training["peak_lr"] == pytest.approx(0.1 * 16 / 256)  # --lr is per 256 images
    assert torch.isfinite(torch.tensor(ckpt.metrics["train_loss"]))


def test_distillation_teacher_must_match_the_data(trained_run, tiny_fashion_dir, tmp_path):
    args = ["--data", str(tiny_fashion_dir), "--out", str(tmp_path / "x"), "--epochs", "1", *TINY_ARGS,
            "--image-size", "28", "--resize", "28", "--kd-teacher", str(trained_run["out"] / "model.pt")]
    with pytest.raises(ConfigError, match="kd-teacher"):
        train.run(parse_config(args))


def test_shortcut_option_b_is_trained_and_recorded(image_folder, tmp_path):
    out = tmp_path / "optb"
    short_run(image_folder(train=12, val=2), out, "--shortcut", "B")
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt.meta["arch_kwargs"]["shortcut"] == "B"
    assert any(".downsample." in name for name, _ in ckpt.model.named_parameters())  # 1x1 projections exist


def test_resume_refuses_flags_that_change_what_is_learned_and_applies_safe_ones(image_folder, tmp_path, caplog):
    data, out = image_folder(train=12, val=2), tmp_path / "r"
    short_run(data, out)
    with pytest.raises(ConfigError) as exc:
        short_run(data, out, "--resume", "--lr", "0.05", "--label-smoothing", "0.2")
    message = str(exc.value)
    assert "--lr 0.05 (stored: 0.1)" in message and "--label-smoothing 0.2 (stored: 0.0)" in message
    assert "last.pt" in message
    caplog.set_level("INFO", logger="resnet-train")
    args = ["--data", str(data), "--out", str(out), "--epochs", "2", "--max-steps-per-epoch", "2", *TINY_ARGS]
    metrics = train.run(parse_config([*args, "--resume"]))  # the same flags and a longer run: resumed
    assert metrics["epoch"] == 2
    assert "--resume: applying --epochs 2" in caplog.text and "resumed from" in caplog.text


def test_tensorboard_events_hold_the_per_epoch_curve(image_folder, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, tb = tmp_path / "tb-run", tmp_path / "events"
    args = ["--data", str(image_folder(train=12, val=2)), "--out", str(out), "--epochs", "2",
            "--max-steps-per-epoch", "1", *TINY_ARGS, "--tensorboard", str(tb)]
    train.run(parse_config(args))
    events = EventAccumulator(str(tb))
    events.Reload()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"val_top1", "val_loss", "train_loss", "lr"} <= set(events.Tags()["scalars"])
    scalars = events.Scalars("val_top1")
    assert [s.step for s in scalars] == [1, 2]
    assert [s.value for s in scalars] == pytest.approx([r["val_top1"] for r in rows])
