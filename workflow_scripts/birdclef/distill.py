"""What a student learns from besides the hard labels: the teachers' soft predictions.

- Labelled chunks: the target is ``(1 - distill_weight) * hard + distill_weight * soft``,
  where soft is the teachers' out-of-fold prediction for that chunk, softened by a
  temperature (on the logit: ``sigmoid(logit(p) / T)``). Chunks without a teacher
  prediction keep their hard target.
- Pseudo-labelled soundscape windows (those ``pseudo_label`` kept): the target is
  their soft label, and ``pseudo_share`` of each epoch's samples are drawn from them
  (the old sampling).
- Soundscape MixUp (``soundscape_mixup``, the BirdCLEF 2025 winner's self-training):
  with probability p a labelled chunk is blended with a random pseudo-labelled window,
  any window the student may see, kept or not: ``lam * chunk + (1 - lam) * window``
  with ``lam ~ Beta(alpha, alpha)``, the target by the label rule (``augment.mix_labels``),
  the chunk's sample weight, and, under embedding distillation, the same blend of
  the two BirdNET embeddings. Soft labels below ``floor`` are zeroed in every window.
- Out of fold over soundscapes: a student of fold k (and an embedding-distilled
  teacher of fold k) learns from no window of soundscape fold k
  (``folds.soundscape_fold``); those are the windows its own predictions may label.
- ``teacher_soft_targets``: the teachers' out-of-fold predictions, blended. Out of
  fold, so that no chunk's soft target comes from a model that trained on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from birdclef.augment import beta_draws, mix_labels
from birdclef.dataset import MelShardDataset
from birdclef.settings import DistillConfig, SoundscapeMixupConfig


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T), computed safely at 0 and 1."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-6, 1 - 1e-6)
    return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature))


class DistilledChunks(Dataset):
    """Labelled chunks whose targets mix the hard label with the teachers' soft prediction."""

    def __init__(self, base: MelShardDataset, soft: pd.DataFrame, cfg: DistillConfig) -> None:
        self.base, self.cfg = base, cfg
        key = pd.MultiIndex.from_frame(base.rows[["id", "offset_s"]].astype({"offset_s": "float64"}))
        table = soft.astype({"offset_s": "float64"}).set_index(["id", "offset_s"])
        aligned = table.reindex(key)[base.classes].to_numpy(dtype=np.float64)
        self.has_soft = ~np.isnan(aligned).any(axis=1)
        self.soft = np.where(self.has_soft[:, None], soften(np.nan_to_num(aligned), cfg.temperature), 0.0)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mel, target, weight = self.base[index]
        if self.has_soft[index]:
            w = self.cfg.distill_weight
            target = (1 - w) * target + w * torch.from_numpy(self.soft[index].astype(np.float32))
        return mel, target, weight


def floored(targets: np.ndarray, floor: float) -> np.ndarray:
    """Soft labels with every value below ``floor`` set to 0."""
    return np.where(targets < floor, 0.0, targets).astype(np.float32) if floor > 0 else targets


class PseudoWindows(Dataset):
    """Pseudo-labelled soundscape windows, each with its soft label (floored) as target and weight 1.

    ``kept_only``: the windows pseudo_label kept (the old sampling), else every window (soundscape
    MixUp's pool). ``allowed``: a mask over the shards' rows; only those windows are used.
    """

    def __init__(
        self,
        shards: MelShardDataset,
        labels: pd.DataFrame,
        allowed: np.ndarray | None = None,
        kept_only: bool = True,
        floor: float = 0.0,
    ) -> None:
        self.base = shards
        by_row = labels.set_index("row_id")
        chosen = by_row.index[by_row["keep"]] if kept_only else by_row.index
        row_ids = shards.rows["row_id"]
        mask = row_ids.isin(chosen).to_numpy()
        if allowed is not None:
            mask = mask & np.asarray(allowed, dtype=bool)
        self.rows = np.flatnonzero(mask)
        targets = by_row.loc[row_ids.to_numpy()[self.rows], shards.classes].to_numpy(np.float32, copy=True)
        self.targets = floored(targets, floor)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.base.input_tensor(int(self.rows[index])), torch.from_numpy(self.targets[index]), torch.tensor(1.0)


class SoundscapeWindows(Dataset):
    """Soundscape windows: a pseudo-label (weight 1) where pseudo_label kept one, else no class target (weight 0).

    What a CNN learns BirdNET's embedding on, beside the labelled chunks: with weight 0 only the
    embedding loss applies to a window. ``allowed``: a mask over the shards' rows (the windows
    outside the model's own soundscape fold); ``self.rows`` are the rows used.
    """

    def __init__(
        self,
        shards: MelShardDataset,
        labels: pd.DataFrame | None = None,
        allowed: np.ndarray | None = None,
        floor: float = 0.0,
    ) -> None:
        self.base = shards
        self.rows = np.flatnonzero(allowed) if allowed is not None else np.arange(len(shards))
        self.targets = np.zeros((len(self.rows), len(shards.classes)), np.float32)
        self.weights = np.zeros(len(self.rows), np.float32)
        if labels is not None:
            kept = labels[labels["keep"]].set_index("row_id")
            row_ids = shards.rows["row_id"].to_numpy()[self.rows]
            have = np.flatnonzero(np.isin(row_ids, kept.index))
            targets = kept.loc[row_ids[have], shards.classes].to_numpy(np.float32)
            self.targets[have] = floored(targets, floor)
            self.weights[have] = 1.0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            self.base.input_tensor(int(self.rows[index])),
            torch.from_numpy(self.targets[index]),
            torch.tensor(float(self.weights[index])),
        )


class WithEmbeddings(Dataset):
    """A dataset's samples with BirdNET's embedding of each as a fourth element (the distillation target).

    ``rows``: for each sample index, its row in ``embeddings`` (n x 1024).
    """

    def __init__(self, base: Dataset, embeddings: np.ndarray, rows: np.ndarray) -> None:
        self.base, self.embeddings, self.rows = base, embeddings, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return (*self.base[index], torch.from_numpy(self.embeddings[self.rows[index]]))


def mixup_pairs(
    picks: Sequence[int], n_labelled: int, n_windows: int, cfg: SoundscapeMixupConfig, g: torch.Generator
) -> list[tuple[int, int, float]]:
    """Soundscape MixUp's plan for one epoch: (sample, window or -1, the sample's share lam) per pick, in order.

    Only labelled samples (``pick < n_labelled``) are blended, each with probability ``cfg.p``, with a
    window drawn uniformly from the ``n_windows`` of the pool. Drawn from ``g``, so a resumed run repeats it.
    """
    picks = list(picks)
    if cfg.p == 0 or n_windows == 0 or not picks:
        return [(i, -1, 1.0) for i in picks]
    chosen = torch.rand(len(picks), generator=g) < cfg.p
    partner = torch.randint(n_windows, (len(picks),), generator=g)
    lam = beta_draws(cfg.alpha, len(picks), g)
    return [
        (i, int(j), float(a)) if bool(c) and i < n_labelled else (i, -1, 1.0)
        for i, c, j, a in zip(picks, chosen, partner, lam, strict=True)
    ]


class SoundscapeMixup(Dataset):
    """An epoch's samples with soundscape MixUp applied: ``samples[i]`` blended with ``windows[j]`` by its lam.

    ``pairs``: from ``mixup_pairs``. A blended sample keeps the chunk's weight; its input, and its
    embedding target when the samples carry one (a NaN target stays NaN), blend by lam.
    """

    def __init__(self, samples: Dataset, windows: Dataset, pairs: Sequence[tuple[int, int, float]], rule: str) -> None:
        self.samples, self.windows, self.pairs, self.rule = samples, windows, list(pairs), rule

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        i, j, lam = self.pairs[index]
        x, y, w, *e = self.samples[i]
        if j < 0:
            return (x, y, w, *e)
        x2, y2, _, *e2 = self.windows[j]
        mixed = (lam * x + (1 - lam) * x2, mix_labels(y, y2, lam, self.rule), w)
        return (*mixed, *(lam * a + (1 - lam) * b for a, b in zip(e, e2, strict=True)))


def teacher_soft_targets(oof: Mapping[str, Sequence[pd.DataFrame]], weights: Mapping[str, float]) -> pd.DataFrame:
    """The teachers' out-of-fold predictions per labelled chunk, blended: id, offset_s, one column per class.

    ``oof``: teacher name -> its folds' oof.parquet tables; a teacher weighs ``weights.get(name, 1)``.
    """
    parts = []
    for name, folds in oof.items():
        table = pd.concat(folds, ignore_index=True).drop(columns=["primary_label"], errors="ignore")
        parts.append(table.assign(_w=float(weights.get(name, 1.0))))
    table = pd.concat(parts, ignore_index=True)
    classes = [c for c in table.columns if c not in ("id", "offset_s", "_w")]
    weighted = (
        table[classes].mul(table["_w"], axis=0).assign(id=table["id"], offset_s=table["offset_s"], _w=table["_w"])
    )
    sums = weighted.groupby(["id", "offset_s"], sort=True).sum()
    return sums[classes].div(sums["_w"], axis=0).reset_index()
