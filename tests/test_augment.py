import pytest
import torch

from birdclef.augment import augment_batch, cutmix, mixup, random_gain, xy_mask
from birdclef.settings import AugmentConfig

OFF = AugmentConfig(mixup_p=0, cutmix_p=0, mask_p=0, gain_p=0)


def batch(n: int = 8):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 32, 64, generator=g) + 0.5
    y = torch.zeros(n, 5)
    y[torch.arange(n), torch.arange(n) % 5] = 1.0
    return x, y, torch.linspace(0.5, 1.0, n)


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_nothing_happens_at_probability_zero():
    x, y, w = batch()
    x2, y2, w2 = augment_batch(x, y, w, OFF, gen())
    assert torch.equal(x2, x) and torch.equal(y2, y) and torch.equal(w2, w)


@pytest.mark.parametrize("rule", ["mix", "max"])
def test_mixup_blends_audio_and_labels_by_the_rule(rule):
    x, y, w = batch()
    cfg = AugmentConfig(mixup_p=1.0, label_rule=rule)
    x2, y2, w2 = mixup(x, y, w, cfg, gen())
    assert x2.shape == x.shape and not torch.equal(x2, x)
    if rule == "max":
        assert set(y2.unique().tolist()) <= {0.0, 1.0} and (y2.sum(dim=1) >= 1).all()
    else:
        torch.testing.assert_close(y2.sum(dim=1), torch.ones(len(y)))
    assert (w2 >= w).all()


def test_cutmix_pastes_a_time_span():
    x, y, w = batch()
    x2, y2, _ = cutmix(x, y, w, AugmentConfig(cutmix_p=1.0, label_rule="max"), gen())
    changed = (x2 != x).any(dim=(1, 2))  # per sample, per frame
    for row in changed:
        idx = torch.nonzero(row).flatten()
        if len(idx):
            assert (idx.diff() == 1).all()  # one contiguous span of frames
    assert (y2 >= y).all()


def test_masks_zero_bands_and_spans():
    x, *_ = batch()
    cfg = AugmentConfig(mask_p=1.0, freq_masks=1, freq_mask_max=8, time_masks=1, time_mask_max=20)
    x2 = xy_mask(x, cfg, gen())
    assert (x2 == 0).any() and ((x2 == 0) | (x2 == x)).all()


def test_gain_stays_within_its_range():
    x, *_ = batch()
    ratio = random_gain(x, AugmentConfig(gain_p=1.0, gain_range=0.2), gen()) / x
    assert ((ratio >= 0.8 - 1e-6) & (ratio <= 1.2 + 1e-6)).all()


def test_same_seed_same_batch():
    x, y, w = batch()
    cfg = AugmentConfig(mixup_p=0.5, cutmix_p=0.5, mask_p=0.5, gain_p=0.5)
    a, b = augment_batch(x, y, w, cfg, gen(7)), augment_batch(x, y, w, cfg, gen(7))
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)


def test_bad_label_rule_names_the_key():
    with pytest.raises(ValueError, match="augment.label_rule"):
        AugmentConfig(label_rule="sum")
