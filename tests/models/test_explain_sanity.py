"""The heatmaps are right, not only pictures: the pointing game on a model trained here, where the truth is known, and
the model-randomisation check (Adebayo et al., 2018).

The data: 32x32 grayscale noise with one bright 8x8 patch; the class is the quadrant the patch is in (jittered by up
to 3 px). A CNN that pools globally cannot see absolute position, so the patch carries a texture that is a fixed
function of the position (stripes of a different direction per quadrant): the location is visible on the patch and
nowhere else, and a correct heatmap must peak on it. A decoy patch, as bright but plain, sits in another quadrant:
brightness alone does not win the game (an untrained model, which follows brightness, is checked to lose it).

A hit is a maximum on the patch or at most 1 px beside it: the pointing game of Zhang et al. (2016) allows 15 px at
ImageNet scale, and here 1 px is half a cell of the 16x16 layer the map is upsampled from (the misses without it are
all exactly one pixel off the patch's edge, the half-cell offset of a stride-2 map).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.explain import METHODS, explain, explainable_copy
from models.resnet import BasicBlock, ResNet

pytestmark = pytest.mark.slow  # about 10 s on 2 quiet cores: training the tiny model is most of it
SIZE, PATCH, JITTER = 32, 8, 3
CENTERS = [(8, 8), (8, 24), (24, 8), (24, 24)]  # quadrant k's patch centre; class k
_Y, _X = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
STRIPES = [_Y % 2, _X % 2, (_Y + _X) % 2, (_Y // 2 + _X // 2) % 2]  # what the patch shows in quadrant k


def patch_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """(images (n, 1, 32, 32), classes (n,), the (top, left) of each patch)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(n, 1, SIZE, SIZE, generator=g)
    y = torch.randint(0, len(CENTERS), (n,), generator=g)
    shift = torch.randint(-JITTER, JITTER + 1, (n, 2), generator=g)
    other = torch.randint(1, len(CENTERS), (n,), generator=g)
    corners = []
    for i in range(n):
        cy, cx = CENTERS[int(y[i])]
        top, left = cy - PATCH // 2 + int(shift[i, 0]), cx - PATCH // 2 + int(shift[i, 1])
        texture = STRIPES[int(y[i])][top:top + PATCH, left:left + PATCH].float()
        x[i, 0, top:top + PATCH, left:left + PATCH] += 1.0 + texture  # bright: 1..2 over noise of 0.1
        corners.append((top, left))
        dy, dx = CENTERS[(int(y[i]) + int(other[i])) % len(CENTERS)]  # a decoy as bright, in another quadrant
        x[i, 0, dy - PATCH // 2:dy + PATCH // 2, dx - PATCH // 2:dx + PATCH // 2] += 1.5
    return x, y, corners


def tiny_resnet(seed: int) -> ResNet:
    torch.manual_seed(seed)
    return ResNet(BasicBlock, [1, 1], num_classes=len(CENTERS), widths=(8, 16), in_channels=1, small_input=True)


@pytest.fixture(scope="module")
def trained() -> ResNet:
    """The tiny ResNet trained on 400 patch images (a few CPU seconds); asserted to have learned the task."""
    x, y, _ = patch_images(400, seed=0)
    model = tiny_resnet(seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(8):
        model.train()
        for idx in torch.randperm(len(x), generator=torch.Generator().manual_seed(1)).split(32):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    held_out, labels, _ = patch_images(100, seed=1)
    with torch.no_grad():
        assert (model(held_out).argmax(1) == labels).float().mean() >= 0.95
    return model


def on_patch(heatmap: torch.Tensor, top: int, left: int, tolerance: int = 1) -> bool:
    """Whether the heatmap's maximum lies on the patch (or within `tolerance` pixels of it)."""
    row, col = divmod(int(heatmap.argmax()), SIZE)
    return top - tolerance <= row < top + PATCH + tolerance and left - tolerance <= col < left + PATCH + tolerance


def heatmaps(model: ResNet, images: torch.Tensor, labels: torch.Tensor, method: str = "gradcam") -> list[torch.Tensor]:
    private = explainable_copy(model)
    return [explain(private, image, int(label), method).heatmap for image, label in zip(images, labels, strict=True)]


@pytest.mark.parametrize("method", METHODS)
def test_pointing_game_the_heatmap_peaks_on_the_patch(trained, method):
    images, labels, corners = patch_images(100, seed=2)  # held out: other noise, other positions
    maps = heatmaps(trained, images, labels, method)
    hits = sum(on_patch(heatmap, top, left) for heatmap, (top, left) in zip(maps, corners, strict=True))
    assert hits >= 90, f"{hits}/100 maxima on the patch"


def test_pointing_game_is_not_won_by_chance(trained):
    """The same count for an untrained model: far below, so that the 90 % above says something about the method."""
    images, labels, corners = patch_images(100, seed=2)
    maps = heatmaps(tiny_resnet(seed=5).eval(), images, labels)
    hits = sum(on_patch(heatmap, top, left) for heatmap, (top, left) in zip(maps, corners, strict=True))
    assert hits < 75, f"{hits}/100 maxima on the patch for an untrained model"


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two maps; 0 when one of them is constant (nothing to correlate)."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float(a @ b) / denominator if denominator > 0 else 0.0


def test_model_randomisation_changes_the_heatmap(trained):
    """Re-initialised weights, same architecture, same images: the maps must not stay alike. Mean correlation over 50
    images and 8 re-initialisations < 0.5 (one re-initialisation alone ranges from about 0.1 to 0.6 here: random
    convolutions still respond to the bright patches, so a single draw would make a flaky test)."""
    images, labels, _ = patch_images(50, seed=3)
    trained_maps = heatmaps(trained, images, labels)
    means = []
    for seed in range(7, 15):
        random_maps = heatmaps(tiny_resnet(seed=seed).eval(), images, labels)
        means.append(sum(correlation(a, b) for a, b in zip(trained_maps, random_maps, strict=True)) / len(images))
    assert sum(means) / len(means) < 0.5, means
