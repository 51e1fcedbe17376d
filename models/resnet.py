"""The ResNet family, written from the papers' blocks with torchvision's parameter names.

He et al. 2015 (ResNet, incl. the CIFAR nets of section 4.2), Xie et al. 2017 (ResNeXt),
Zagoruyko & Komodakis 2016 (Wide ResNet). Parameter names (`conv1`, `bn1`, `layer1.0.downsample.0`,
`fc`) are a public contract: an official torchvision state dict loads with `strict=True`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from models.registry import CIFAR, register_model

NormLayer = Callable[[int], nn.Module]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding."""
    return nn.Conv2d(in_planes, out_planes, 3, stride, padding=dilation, groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution."""
    return nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)


class PadShortcut(nn.Module):
    """Option A shortcut of the paper: subsample spatially, zero-pad the new channels (no parameters)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        front = self.extra // 2
        return nn.functional.pad(x, (0, 0, 0, 0, front, self.extra - front))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR nets)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        norm_layer: NormLayer = nn.BatchNorm2d,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and width_per_group=64")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample

    def residual_bn(self) -> nn.Module:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand. Stride on the 3x3 (v1.5) unless `stride_in_1x1`."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        norm_layer: NormLayer = nn.BatchNorm2d,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, s1)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, s3, groups)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def residual_bn(self) -> nn.Module:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """A stem, `len(layers)` stages of residual blocks, global average pooling and a linear classifier.

    Every model answers the same interface: `forward_features`, `forward_head`, `reset_classifier`,
    `num_features` and `feature_layers` (module names whose activations the service can show).
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        in_channels: int = 3,
        small_input: bool = False,
        shortcut: str = "B",
        stride_in_1x1: bool = False,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        include_top: bool = True,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"layers {list(layers)} and widths {list(widths)} differ in length")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' (zero-padding) or 'B' (projection), got {shortcut!r}")
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self._shortcut = shortcut
        self.groups = groups
        self.base_width = width_per_group
        self.stride_in_1x1 = stride_in_1x1
        self.inplanes = widths[0]
        if small_input:  # 28-64 px images: keep the resolution, as the paper's CIFAR nets do
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, 3, 1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, 7, 2, padding=3, bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, 2, padding=1)
        self.feature_layers = ["conv1"]
        for i, (width, blocks) in enumerate(zip(widths, layers, strict=True)):
            name = f"layer{i + 1}"
            setattr(self, name, self._make_layer(block, width, blocks, stride=1 if i == 0 else 2))
            self.feature_layers.append(name)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = widths[-1] * block.expansion
        self.fc: nn.Module = nn.Linear(self.num_features, num_classes) if include_top else nn.Identity()
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:  # each block starts as the identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.constant_(m.residual_bn().weight, 0)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample: nn.Module | None = None
        out_planes = planes * block.expansion
        if stride != 1 or self.inplanes != out_planes:
            if self._shortcut == "A":
                downsample = PadShortcut(self.inplanes, out_planes, stride)
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, out_planes, stride), self._norm_layer(out_planes))
        common = dict(
            groups=self.groups,
            base_width=self.base_width,
            norm_layer=self._norm_layer,
            stride_in_1x1=self.stride_in_1x1,
        )
        layers = [block(self.inplanes, planes, stride, downsample, **common)]
        self.inplanes = out_planes
        layers += [block(self.inplanes, planes, **common) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor, upto: str | None = None) -> Tensor:
        """Stem and residual stages: the last feature map before pooling, or the output of layer `upto` (one of
        `feature_layers`; "conv1" is the stem's conv after BN and ReLU, before the max-pool).

        A plain walk over the modules, no hooks: the feature-map and explanation endpoints call it on a model
        the inference thread may be running at the same moment.
        """
        if upto is not None and upto not in self.feature_layers:
            raise ValueError(f"unknown layer {upto!r}; known: {', '.join(self.feature_layers)}")
        x = self.relu(self.bn1(self.conv1(x)))
        if upto == "conv1":
            return x
        x = self.maxpool(x)
        for name in self.feature_layers[1:]:
            x = getattr(self, name)(x)
            if name == upto:
                break
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pooling, then the classifier unless `pre_logits`."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The classification layer (timm's name): a trainer finds its parameters through it, never by name."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one of `num_classes` outputs (transfer learning); 0 removes it."""
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def _resnet(block: Block, layers: list[int], num_classes: int, **kwargs) -> ResNet:
    return ResNet(block, layers, num_classes, **kwargs)


@register_model
def resnet18(num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, **kwargs)


@register_model
def resnet34(num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(BasicBlock, [3, 4, 6, 3], num_classes, **kwargs)


@register_model
def resnet50(num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, **kwargs)


@register_model
def resnet101(num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, **kwargs)


@register_model
def resnet152(num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 8, 36, 3], num_classes, **kwargs)


@register_model
def resnext50_32x4d(num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, groups=32, width_per_group=4, **kwargs)


@register_model
def resnext101_32x8d(num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, groups=32, width_per_group=8, **kwargs)


@register_model
def resnext101_64x4d(num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, groups=64, width_per_group=4, **kwargs)


@register_model
def wide_resnet50_2(num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, width_per_group=128, **kwargs)


@register_model
def wide_resnet101_2(num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, width_per_group=128, **kwargs)


def _cifar_resnet(n: int, num_classes: int, **kwargs) -> ResNet:
    """Section 4.2 of the paper: 3x3 stem, 3 stages of n blocks at 16/32/64 channels, 6n+2 layers.

    Shortcut option A (zero-padding identity, no extra parameters) by default, as the paper's table;
    pass `shortcut="B"` for 1x1 projections.
    """
    kwargs.setdefault("shortcut", "A")
    kwargs.setdefault("small_input", True)
    kwargs.setdefault("widths", (16, 32, 64))  # overridable, e.g. tiny widths for fast tests
    return ResNet(BasicBlock, [n, n, n], num_classes, **kwargs)


@register_model(defaults=CIFAR)
def resnet20(num_classes: int = 10, **kwargs) -> ResNet:
    return _cifar_resnet(3, num_classes, **kwargs)


@register_model(defaults=CIFAR)
def resnet32(num_classes: int = 10, **kwargs) -> ResNet:
    return _cifar_resnet(5, num_classes, **kwargs)


@register_model(defaults=CIFAR)
def resnet44(num_classes: int = 10, **kwargs) -> ResNet:
    return _cifar_resnet(7, num_classes, **kwargs)


@register_model(defaults=CIFAR)
def resnet56(num_classes: int = 10, **kwargs) -> ResNet:
    return _cifar_resnet(9, num_classes, **kwargs)


@register_model(defaults=CIFAR)
def resnet110(num_classes: int = 10, **kwargs) -> ResNet:
    return _cifar_resnet(18, num_classes, **kwargs)
