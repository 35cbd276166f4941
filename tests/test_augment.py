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
    x2, y2, w2, _ = augment_batch(x, y, w, OFF, gen())
    assert torch.equal(x2, x) and torch.equal(y2, y) and torch.equal(w2, w)


@pytest.mark.parametrize("rule", ["mix", "max"])
def test_mixup_blends_audio_and_labels_by_the_rule(rule):
    x, y, w = batch()
    cfg = AugmentConfig(mixup_p=1.0, label_rule=rule)
    x2, y2, w2, _ = mixup(x, y, w, cfg, gen())
    assert x2.shape == x.shape and not torch.equal(x2, x)
    if rule == "max":
        assert set(y2.unique().tolist()) <= {0.0, 1.0} and (y2.sum(dim=1) >= 1).all()
    else:
        torch.testing.assert_close(y2.sum(dim=1), torch.ones(len(y)))
    assert (w2 >= w).all()


def test_cutmix_pastes_a_time_span():
    x, y, w = batch()
    x2, y2, _, _ = cutmix(x, y, w, AugmentConfig(cutmix_p=1.0, label_rule="max"), gen())
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
    for u, v in zip(a[:3], b[:3], strict=True):
        assert torch.equal(u, v)


def test_bad_label_rule_names_the_key():
    with pytest.raises(ValueError, match="augment.label_rule"):
        AugmentConfig(label_rule="sum")


@pytest.mark.parametrize("how", ["mixup", "cutmix"])
def test_mixed_samples_target_the_same_mix_of_embeddings(how):
    # Each sample is constant (its index + 1) and so is its target: a mix of two samples with
    # weight lam then has mean lam * a + (1 - lam) * b, which its mixed target must equal.
    n = 8
    x = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 40).clone()
    e = torch.arange(1, n + 1, dtype=torch.float32)[:, None].expand(n, 3).clone()
    e[n - 1] = float("nan")  # a sample without a target embedding
    cfg = AugmentConfig(mixup_p=1.0 if how == "mixup" else 0.0, cutmix_p=1.0 if how == "cutmix" else 0.0)
    x2, _, _, e2 = (mixup if how == "mixup" else cutmix)(x, torch.zeros(n, 2), torch.ones(n), cfg, gen(3), e)
    means = x2.flatten(1).mean(dim=1)
    mixed_with_nan = [i for i in range(n) if i != n - 1 and torch.isnan(e2[i]).any()]
    assert all(torch.isnan(e2[i]).all() for i in mixed_with_nan)  # half a target is no target
    for i in set(range(n - 1)) - set(mixed_with_nan):
        assert torch.allclose(e2[i], means[i].expand(3), atol=1e-5), i
    assert not torch.equal(means, torch.arange(1, n + 1, dtype=torch.float32))  # something was mixed
