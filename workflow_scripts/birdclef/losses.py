"""Losses on clip logits and (soft) multi-label targets, chosen by name in config.

- ``bce``: binary cross-entropy per class.
- ``focal``: focal BCE (Lin et al.), which down-weights easy negatives: with
  hundreds of classes almost every target is an easy 0.
- ``ce``: cross-entropy over a softmax, with the targets normalised to sum to one
  (the BirdCLEF 2024 winner's choice: one bird per 5 s window is the common case).

Each returns one value per sample, so that sample weights apply before the mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from birdclef.settings import LOSSES


def per_sample_loss(
    logits: torch.Tensor, targets: torch.Tensor, name: str = "bce", focal_gamma: float = 2.0
) -> torch.Tensor:
    """(batch, classes) logits and targets in 0..1 -> (batch,) losses."""
    if name == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1)
    if name == "focal":
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p = torch.sigmoid(logits)
        p_true = targets * p + (1 - targets) * (1 - p)
        return ((1 - p_true) ** focal_gamma * bce).mean(dim=1)
    if name == "ce":
        dist = targets / targets.sum(dim=1, keepdim=True).clamp_min(1e-8)
        return -(dist * F.log_softmax(logits, dim=1)).sum(dim=1)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")


def weighted_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, name: str = "bce", focal_gamma: float = 2.0
) -> torch.Tensor:
    """The sample-weighted mean of :func:`per_sample_loss`."""
    losses = per_sample_loss(logits, targets, name, focal_gamma)
    return (losses * weights).sum() / weights.sum().clamp_min(1e-8)


def embedding_loss(projected: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cosine similarity of ``projected`` to ``targets`` (batch x dim), over rows whose target is finite.

    A row of NaN has no target embedding (see birdclef.augment); a batch without any gives 0.
    """
    known = torch.isfinite(targets).all(dim=1)
    if not known.any():
        return projected.sum() * 0.0
    return (1 - F.cosine_similarity(projected[known], targets[known], dim=1)).mean()
