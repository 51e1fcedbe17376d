"""Learning-rate schedule, linear scaling rule, EMA, weight-decay groups and backbone freezing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models import create_model
from models.checkpoint import to_plain
from training.config import TrainConfig, parse_config
from training.ema import ModelEMA
from training.optim import build_optimizer, freeze_backbone, optimizer_state_from_file, param_groups, set_train_mode
from training.schedule import lr_factor, scaled_lr

SCHED = {"total_steps": 14, "warmup_steps": 4, "steps_per_epoch": 2, "min_ratio": 0.0}


@pytest.mark.parametrize(("step", "expected"), [(0, 0.25), (1, 0.5), (3, 1.0)])
def test_linear_warmup(step, expected):
    assert lr_factor(step, schedule="cosine", **SCHED) == pytest.approx(expected)


@pytest.mark.parametrize(("step", "expected"), [(4, 1.0), (9, 0.5), (14, 0.0), (20, 0.0),
                                                (6, 0.5 * (1 + math.cos(math.pi * 0.2)))])
def test_cosine_after_warmup(step, expected):
    assert lr_factor(step, schedule="cosine", **SCHED) == pytest.approx(expected, abs=1e-12)


def test_cosine_floor():
    assert lr_factor(9, schedule="cosine", **{**SCHED, "min_ratio": 0.1}) == pytest.approx(0.1 + 0.9 * 0.5)


@pytest.mark.parametrize(("step", "expected"), [(0, 1.0), (19, 1.0), (20, 0.1), (39, 0.1), (40, 0.01), (99, 0.01)])
def test_step_decay_at_epoch_milestones(step, expected):
    f = lr_factor(step, total_steps=100, warmup_steps=0, steps_per_epoch=10, schedule="step", milestones=[2, 4],
                  gamma=0.1)
    assert f == pytest.approx(expected)


def test_constant_schedule():
    assert lr_factor(50, total_steps=100, warmup_steps=0, steps_per_epoch=10, schedule="constant") == 1.0


def test_linear_scaling_rule():
    assert scaled_lr(0.1, 256, "linear") == pytest.approx(0.1)
    assert scaled_lr(0.1, 1024, "linear") == pytest.approx(0.4)
    assert scaled_lr(0.1, 64, "linear") == pytest.approx(0.025)
    assert scaled_lr(0.1, 1024, "none") == pytest.approx(0.1)


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))


def test_ema_update_is_the_exponential_average_weights_and_bn_statistics():
    torch.manual_seed(0)
    model = tiny_net()
    ema = ModelEMA(model, decay=0.9)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    ema.updates = 1000  # past the warm-up, the decay is the nominal 0.9
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()
    model(torch.randn(8, 2))  # moves the running statistics and num_batches_tracked
    ema.update(model)
    now = model.state_dict()
    for k, v in ema.module.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, 0.9 * before[k] + 0.1 * now[k], atol=1e-6), k
        else:
            assert torch.equal(v, now[k]), k
    assert all(not p.requires_grad for p in ema.module.parameters())


def test_ema_warmup_decay_follows_the_model_early():
    model = tiny_net()
    ema = ModelEMA(model, decay=0.999)
    w0 = ema.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)  # first update: decay = min(0.999, 2 / 11)
    d = 2 / 11
    assert torch.allclose(ema.module[0].weight, d * w0 + (1 - d) * model[0].weight, atol=1e-6)


def test_ema_state_round_trip():
    model = tiny_net()
    ema = ModelEMA(model, 0.99)
    ema.update(model)
    state = ema.state_dict()
    other = ModelEMA(tiny_net(), 0.99)
    other.load_state_dict(state)
    assert other.updates == 1
    assert all(torch.equal(a, b) for a, b in zip(other.module.state_dict().values(),
                                                 ema.module.state_dict().values(), strict=True))


def small_resnet() -> nn.Module:
    return create_model("resnet20", num_classes=3, widths=[4, 8, 16])


def test_weight_decay_excludes_norm_and_bias_and_head_gets_its_lr_multiplier():
    model = small_resnet()
    cfg = TrainConfig(weight_decay=5e-4, no_decay_norm_bias=True, head_lr_mult=10.0)
    groups = param_groups(model, cfg, base_lr=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    norm_params = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    seen = set()
    for g in groups:
        for p in g["params"]:
            seen.add(id(p))
            name = names[id(p)]
            no_decay = id(p) in norm_params or name.endswith(".bias")
            assert g["weight_decay"] == (0.0 if no_decay else 5e-4), name
            assert g["lr_mult"] == (10.0 if name.startswith("fc.") else 1.0), name
    assert seen == set(names)  # every parameter is in exactly one group
    assert sum(len(g["params"]) for g in groups) == len(names)
    off = param_groups(model, TrainConfig(weight_decay=5e-4, no_decay_norm_bias=False), base_lr=0.1)
    assert all(g["weight_decay"] == 5e-4 for g in off)
    opt = build_optimizer(groups, cfg)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"]
    assert isinstance(build_optimizer(groups, TrainConfig(optimizer="adamw")), torch.optim.AdamW)


def test_freeze_backbone_trains_only_the_head_and_keeps_bn_statistics():
    model = small_resnet()
    freeze_backbone(model)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    set_train_mode(model)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model(torch.randn(4, 3, 16, 16))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stats.items())
    groups = param_groups(model, TrainConfig(), base_lr=0.1)
    assert {id(p) for g in groups for p in g["params"]} == {id(model.fc.weight), id(model.fc.bias)}


def test_config_refuses_unknown_flags_and_is_a_plain_dict():
    with pytest.raises(SystemExit):
        parse_config(["--epochz", "3"])
    cfg = parse_config(["--epochs", "3", "--no-hflip", "--widths", "4", "8", "16", "--small-input", "false"])
    assert (cfg.epochs, cfg.hflip, cfg.widths, cfg.small_input) == (3, False, [4, 8, 16], False)
    d = cfg.to_dict()
    assert isinstance(d, dict) and d["epochs"] == 3


def test_optimizer_state_survives_the_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = tiny_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 2)).pow(2).sum().backward()
    opt.step()
    torch.save(to_plain({"optimizer": opt.state_dict()}), tmp_path / "s.pt")  # as the checkpoint stores it
    stored = torch.load(tmp_path / "s.pt", weights_only=True)["optimizer"]
    fresh_model = tiny_net()
    fresh = torch.optim.SGD(fresh_model.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(optimizer_state_from_file(stored))
    for old, new in zip(model.parameters(), fresh_model.parameters(), strict=True):
        assert torch.equal(opt.state[old]["momentum_buffer"], fresh.state[new]["momentum_buffer"])
