"""Architectures: parity with torchvision, the paper's CIFAR nets, and every option."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from models import create_model
from models.resnet import BasicBlock, Bottleneck, PadShortcut

IMAGENET = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
            "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"]
# He et al. 2015, table 6: parameters of the CIFAR-10 nets, and n of 6n+2
CIFAR = {"resnet20": (0.27e6, 3), "resnet32": (0.46e6, 5), "resnet44": (0.66e6, 7), "resnet56": (0.85e6, 9),
         "resnet110": (1.7e6, 18)}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", IMAGENET)
def test_torchvision_state_dict_loads_strictly_and_gives_the_same_outputs(name: str):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    # random BN statistics, so that eval mode is not the identity and a misplaced layer would show
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    with torch.device("meta"):  # no time spent initialising weights that are replaced anyway
        ours = create_model(name).eval()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in reference.named_parameters()]
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)  # strict: same names and shapes
    assert not any(t.is_meta for t in ours.state_dict().values())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert got.shape == (1, 1000)
    assert (got - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", sorted(CIFAR))
def test_cifar_resnets_match_the_paper(name: str):
    paper_params, n = CIFAR[name]
    model = create_model(name)
    assert abs(n_params(model) - paper_params) / paper_params < 0.05
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 6 * n + 2  # option A: no projection convolutions
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [n, n, n]
    assert [model.layer1[0].conv1.out_channels, model.layer2[0].conv1.out_channels,
            model.layer3[0].conv1.out_channels] == [16, 32, 64]
    assert not hasattr(model, "layer4")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_option_a_pads_and_option_b_projects():
    a, b = create_model("resnet20"), create_model("resnet20", shortcut="B")
    assert isinstance(a.layer2[0].downsample, PadShortcut)
    assert isinstance(b.layer2[0].downsample, nn.Sequential)
    assert isinstance(b.layer2[0].downsample[0], nn.Conv2d)
    assert n_params(b) - n_params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)  # 1x1 convs + BN scale/shift
    x = torch.randn(2, 3, 32, 32)
    assert a(x).shape == b(x).shape == (2, 10)


def test_pad_shortcut_subsamples_and_zero_pads_channels():
    x = torch.randn(2, 16, 8, 8)
    y = PadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_tiny_widths_are_accepted_by_the_cifar_builders():
    model = create_model("resnet20", num_classes=3, widths=(4, 8, 16))
    assert model.num_features == 16
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_small_input_stem_keeps_the_resolution():
    big, small = create_model("resnet18").eval(), create_model("resnet18", small_input=True).eval()
    assert big.conv1.kernel_size == (7, 7) and big.conv1.stride == (2, 2)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    x = torch.randn(1, 3, 32, 32)
    assert big.forward_features(x).shape[-1] == 1
    assert small.forward_features(x).shape[-1] == 4


def test_stride_sits_on_the_3x3_by_default_and_on_the_first_1x1_in_v1():
    v15 = create_model("resnet50").layer2[0]
    v1 = create_model("resnet50", stride_in_1x1=True).layer2[0]
    assert isinstance(v15, Bottleneck)
    assert (v15.conv1.stride, v15.conv2.stride) == ((1, 1), (2, 2))
    assert (v1.conv1.stride, v1.conv2.stride) == ((2, 2), (1, 1))
    assert v1.downsample[0].stride == (2, 2)
    x = torch.randn(1, 3, 64, 64)
    assert create_model("resnet50", stride_in_1x1=True).eval()(x).shape == (1, 1000)


def test_zero_init_residual_zeroes_the_last_bn_of_every_block():
    model = create_model("resnet50", zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    assert all(b.bn3.weight.abs().sum() == 0 and b.bn2.weight.abs().sum() > 0 for b in blocks)
    basic = [m for m in create_model("resnet20", zero_init_residual=True).modules() if isinstance(m, BasicBlock)]
    assert all(b.bn2.weight.abs().sum() == 0 and b.bn1.weight.abs().sum() > 0 for b in basic)
    assert all(b.bn3.weight.abs().sum() > 0 for b in create_model("resnet50").modules() if isinstance(b, Bottleneck))


def test_one_input_channel():
    model = create_model("resnet18", num_classes=10, in_channels=1, small_input=True)
    assert model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(("name", "features"), [("resnet18", 512), ("resnet50", 2048), ("resnet20", 64)])
def test_include_top_false_returns_pooled_features(name: str, features: int):
    torch.manual_seed(0)
    headless = create_model(name, include_top=False).eval()
    assert headless.num_features == features
    assert not [n for n, _ in headless.named_parameters() if n.startswith("fc.")]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = headless(x)
        pooled = headless.forward_features(x).mean(dim=(2, 3))
    assert out.shape == (2, features)
    torch.testing.assert_close(out, pooled)


def test_forward_features_head_and_reset_classifier():
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 512, 2, 2)
        assert torch.equal(model.forward_head(feats), model(x))
        assert model.forward_head(feats, pre_logits=True).shape == (2, 512)
    assert model.feature_layers == ["conv1", "layer1", "layer2", "layer3", "layer4"]
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    model.reset_classifier(7)
    assert model(x).shape == (2, 7)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in backbone.items())
    model.reset_classifier(0)
    assert model(x).shape == (2, 512)


def test_basic_block_refuses_groups():
    with pytest.raises(ValueError, match="BasicBlock"):
        create_model("resnet18", groups=32, width_per_group=4)


def test_bad_shortcut_option_is_refused():
    with pytest.raises(ValueError, match="shortcut"):
        create_model("resnet20", shortcut="C")
