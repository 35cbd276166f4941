"""Augmentations on batches of log-mels (batch, 1, mels, frames), each applied with a probability from config.

All take a ``torch.Generator`` so that a seeded CPU run repeats exactly. ``e`` (or None)
holds per-sample targets that mix linearly with the sample, as BirdNET embeddings do in
embedding distillation: a mixed sample's target is the same mix of its partners'
(a row of NaN, no target, stays NaN when mixed). ``mix_only`` is the one augmentation
that makes sense on a flat input such as a BirdNET embedding.
- ``mixup``: blend two samples; labels by ``label_rule`` "mix" (blend them too)
  or "max" (keep every call present at full weight, as the BirdCLEF winners did).
- ``cutmix``: paste a span of frames (time) from another sample; labels as mixup.
- ``xy_mask``: zero random frequency bands and time spans (SpecAugment-style).
- ``random_gain``: scale a sample's mel by a random factor (on 0..1 minmax mels a
  dB offset would be undone by the normalisation; a scale is not).
"""

from __future__ import annotations

import numpy as np
import torch

from birdclef.settings import AugmentConfig


def _rand(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g)


def mix_labels(y: torch.Tensor, y2: torch.Tensor, lam: torch.Tensor | float, rule: str) -> torch.Tensor:
    """The target of a blend ``lam * a + (1 - lam) * b`` whose parts have targets ``y`` and ``y2``.

    "max": every call present keeps full weight; "mix": the targets blend as the inputs do.
    ``lam`` broadcasts against ``y`` (a column per sample for a batch).
    """
    return torch.maximum(y, y2) if rule == "max" else lam * y + (1 - lam) * y2


def _labels(y: torch.Tensor, y2: torch.Tensor, lam: torch.Tensor, rule: str) -> torch.Tensor:
    return mix_labels(y, y2, lam[:, None], rule)


def _per_sample(lam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return lam.view(-1, *([1] * (x.dim() - 1)))


def _mix_extra(e, lam: torch.Tensor, perm: torch.Tensor, chosen: torch.Tensor):
    if e is None:
        return None
    mixed = _per_sample(lam, e).to(e.dtype) * e + (1 - _per_sample(lam, e).to(e.dtype)) * e[perm]
    return torch.where(chosen[:, None], mixed, e)


def beta_draws(alpha: float, n: int, g: torch.Generator) -> np.ndarray:
    """``n`` draws from Beta(alpha, alpha), repeatable from ``g``.

    torch's Beta sampler takes no generator; a numpy one seeded from ``g`` keeps runs repeatable.
    """
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
    return rng.beta(alpha, alpha, n)


def mixup(x, y, w, cfg: AugmentConfig, g: torch.Generator, e=None):
    """Blend each chosen sample with a random partner; weights take the larger of the two."""
    chosen = _rand(len(x), g) < cfg.mixup_p
    if not chosen.any():
        return x, y, w, e
    perm = torch.randperm(len(x), generator=g)
    lam = torch.as_tensor(beta_draws(cfg.mixup_alpha, len(x), g), dtype=x.dtype)
    lam = torch.where(chosen, lam, torch.ones_like(lam))
    x = _per_sample(lam, x) * x + (1 - _per_sample(lam, x)) * x[perm]
    y = torch.where(chosen[:, None], _labels(y, y[perm], lam, cfg.label_rule), y)
    w = torch.where(chosen, torch.maximum(w, w[perm]), w)
    return x, y, w, _mix_extra(e, lam, perm, chosen)


def cutmix(x, y, w, cfg: AugmentConfig, g: torch.Generator, e=None):
    """Replace a random span of frames of each chosen sample with the same span of a random partner."""
    chosen = _rand(len(x), g) < cfg.cutmix_p
    if not chosen.any():
        return x, y, w, e
    perm = torch.randperm(len(x), generator=g)
    frames = x.shape[-1]
    source, x = x, x.clone()  # spans come from the unmixed batch, never from a sample already pasted into
    lam = torch.ones(len(x), dtype=x.dtype)
    for i in torch.nonzero(chosen).flatten().tolist():
        span = int(_rand(1, g).item() * frames * 0.5) + 1
        start = int(_rand(1, g).item() * (frames - span + 1))
        x[i, ..., start : start + span] = source[perm[i], ..., start : start + span]
        lam[i] = 1 - span / frames
    y = torch.where(chosen[:, None], _labels(y, y[perm], lam, cfg.label_rule), y)
    w = torch.where(chosen, torch.maximum(w, w[perm]), w)
    return x, y, w, _mix_extra(e, lam, perm, chosen)


def xy_mask(x, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Zero ``freq_masks`` bands and ``time_masks`` spans in each chosen sample."""
    chosen = torch.nonzero(_rand(len(x), g) < cfg.mask_p).flatten().tolist()
    if not chosen:
        return x
    x = x.clone()
    mels, frames = x.shape[-2:]
    for i in chosen:
        for _ in range(cfg.freq_masks):
            width = int(_rand(1, g).item() * cfg.freq_mask_max)
            start = int(_rand(1, g).item() * max(1, mels - width))
            x[i, ..., start : start + width, :] = 0
        for _ in range(cfg.time_masks):
            width = int(_rand(1, g).item() * cfg.time_mask_max)
            start = int(_rand(1, g).item() * max(1, frames - width))
            x[i, ..., start : start + width] = 0
    return x


def random_gain(x, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    chosen = _rand(len(x), g) < cfg.gain_p
    factor = 1 + (2 * _rand(len(x), g) - 1) * cfg.gain_range
    factor = torch.where(chosen, factor, torch.ones(len(x))).to(x.dtype)
    return x * factor[:, None, None, None]


def augment_batch(x, y, w, cfg: AugmentConfig, g: torch.Generator, e=None):
    """Every augmentation in turn on mels: mixup, cutmix, masks, gain. Returns (x, y, w, e)."""
    x, y, w, e = mixup(x, y, w, cfg, g, e)
    x, y, w, e = cutmix(x, y, w, cfg, g, e)
    return random_gain(xy_mask(x, cfg, g), cfg, g), y, w, e


def mix_only(x, y, w, cfg: AugmentConfig, g: torch.Generator, e=None):
    """Mixup alone, for flat inputs (BirdNET embeddings): no frames to cut, no bands to mask. Returns (x, y, w, e)."""
    return mixup(x, y, w, cfg, g, e)
