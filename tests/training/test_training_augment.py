"""Each training trick changes what it should, checked against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.augment import (
    cutmix,
    cutout,
    kd_loss,
    mix_batch,
    mixup,
    one_hot_smooth,
    pad_crop_flip,
    random_erasing,
    ricap,
    soft_cross_entropy,
)


def constant_images(n: int = 6, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with the value i, so every output pixel says which source image it came from."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, size, size).clone()
    return x, F.one_hot(torch.arange(n), n).float()


def test_label_smoothing_targets_and_loss_match_hand_computation():
    t = one_hot_smooth(torch.tensor([2]), 4, 0.1)
    assert torch.allclose(t, torch.tensor([[0.025, 0.025, 0.925, 0.025]]))
    logits = torch.tensor([[1.0, 2.0, 3.0, 0.5]])
    log_z = math.log(sum(math.exp(v) for v in (1.0, 2.0, 3.0, 0.5)))
    by_hand = -sum(tv * (lv - log_z) for tv, lv in zip((0.025, 0.025, 0.925, 0.025), (1.0, 2.0, 3.0, 0.5),
                                                        strict=True))
    assert soft_cross_entropy(logits, t).item() == pytest.approx(by_hand, rel=1e-6)
    # and it is the same loss as PyTorch's own label smoothing
    assert soft_cross_entropy(logits, t).item() == pytest.approx(
        F.cross_entropy(logits, torch.tensor([2]), label_smoothing=0.1).item(), rel=1e-6)


def test_mixup_is_one_convex_combination_of_two_images_and_their_targets():
    torch.manual_seed(0)
    x, t = constant_images()
    mx, mt = mixup(x, t, alpha=0.4)
    assert torch.allclose(mt.sum(1), torch.ones(len(x)))
    assert (mt >= 0).all()
    for i in range(len(x)):
        j = int(torch.nonzero((mt[i] > 0) & (torch.arange(len(x)) != i)).flatten()[0]) if (mt[i] > 0).sum() > 1 else i
        lam = mt[i, i].item() if j != i else 1.0
        # the pixels are lam * i + (1 - lam) * j: the image mix has the target's ratio
        assert torch.allclose(mx[i], torch.full_like(mx[i], lam * i + (1 - lam) * j), atol=1e-5)


def test_cutmix_targets_weight_the_pasted_area():
    torch.manual_seed(1)
    x, t = constant_images(n=5, size=16)
    for _ in range(5):
        mx, mt = cutmix(x, t, alpha=1.0)
        assert torch.allclose(mt.sum(1), torch.ones(len(x)))
        for i in range(len(x)):
            own = (mx[i, 0] == i).float().mean().item()
            if own < 1.0:  # a box from another image j was pasted; the target says how much of each
                assert mt[i, i].item() == pytest.approx(own, abs=1e-6)
                others = set(mx[i, 0].unique().tolist()) - {float(i)}
                (j,) = others
                assert mt[i, int(j)].item() == pytest.approx(1 - own, abs=1e-6)


def test_ricap_targets_are_the_four_patch_areas():
    torch.manual_seed(2)
    x, t = constant_images(n=8, size=12)
    mx, mt = ricap(x, t, beta=0.3)
    assert torch.allclose(mt.sum(1), torch.ones(len(x)))
    for i in range(len(x)):
        area = torch.stack([(mx[i, 0] == k).float().mean() for k in range(len(x))])
        assert torch.allclose(mt[i], area, atol=1e-6)


def test_mix_batch_off_or_probability_zero_changes_nothing():
    x, t = constant_images()
    assert mix_batch(x, t, mixup_alpha=0, cutmix_alpha=0, ricap_beta=0, prob=1.0)[0] is x
    mx, mt = mix_batch(x, t, mixup_alpha=1.0, cutmix_alpha=1.0, ricap_beta=0, prob=0.0)
    assert torch.equal(mx, x) and torch.equal(mt, t)


def test_kd_loss_equals_the_formula():
    torch.manual_seed(3)
    r, z = torch.randn(4, 5), torch.randn(4, 5)  # student and teacher logits
    target = one_hot_smooth(torch.tensor([0, 1, 2, 3]), 5)
    T, a = 3.0, 0.7
    ce = -(target * F.log_softmax(r, 1)).sum(1).mean()
    pt, ps = F.softmax(z / T, 1), F.softmax(r / T, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean()  # KL(teacher || student), averaged over the batch
    expected = (1 - a) * ce + a * T * T * kl
    assert kd_loss(r, z, target, alpha=a, temperature=T).item() == pytest.approx(expected.item(), rel=1e-5)
    # alpha 0 is plain cross-entropy; identical logits add no distillation term
    assert kd_loss(r, z, target, alpha=0.0, temperature=T).item() == pytest.approx(ce.item(), rel=1e-6)
    assert kd_loss(r, r, target, alpha=1.0, temperature=T).item() == pytest.approx(0.0, abs=1e-6)


def test_cutout_zeroes_one_square_region_and_nothing_else():
    torch.manual_seed(4)
    x = torch.rand(10, 3, 16, 16) + 1.0  # never zero before the cut
    out = cutout(x, 6)
    for i in range(len(x)):
        zero = out[i] == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])  # the same hole in every channel
        ys, xs = torch.nonzero(zero[0], as_tuple=True)
        assert len(ys) > 0
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert h <= 6 and w <= 6 and len(ys) == h * w  # one axis-aligned rectangle (clipped square)
        assert torch.equal(out[i][~zero], x[i][~zero])


def test_random_erasing_changes_only_one_rectangle():
    torch.manual_seed(5)
    x = torch.zeros(8, 3, 16, 16)
    out = random_erasing(x, 1.0)
    for i in range(len(x)):
        changed = (out[i] != x[i]).any(0)
        ys, xs = torch.nonzero(changed, as_tuple=True)
        assert len(ys) > 0
        box = changed[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        assert box.float().mean() > 0.9  # random values inside one box (a value may equal 0 by chance)
        assert changed.sum() < 16 * 16
    assert torch.equal(random_erasing(x, 0.0), x)


def test_pad_crop_flip_shifts_by_at_most_the_padding():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(1, 65, dtype=torch.float32).view(1, 1, 8, 8).repeat(20, 1, 1, 1)  # padding is the only 0
    out = pad_crop_flip(x, 2, hflip=False, generator=g)
    assert out.shape == x.shape
    for img in out:
        inside = img[0][img[0] > 0]
        assert len(inside) >= 36  # at most 2 rows and 2 columns shifted out
        assert set(inside.tolist()) <= set(range(1, 65))
    flipped = pad_crop_flip(x, 0, hflip=True, generator=g)
    assert all(torch.equal(f, x[0]) or torch.equal(f, x[0].flip(-1)) for f in flipped)
