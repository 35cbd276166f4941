"""What a student learns from besides the hard labels: the teachers' soft predictions.

- Labelled chunks: the target is ``(1 - distill_weight) * hard + distill_weight * soft``,
  where soft is the teachers' out-of-fold prediction for that chunk, softened by a
  temperature (on the logit: ``sigmoid(logit(p) / T)``). Chunks without a teacher
  prediction keep their hard target.
- Pseudo-labelled soundscape windows (those ``pseudo_label`` kept): the target is
  their soft label, and ``pseudo_share`` of each epoch's samples are drawn from them.
- ``teacher_soft_targets``: the teachers' out-of-fold predictions, blended. Out of
  fold, so that no chunk's soft target comes from a model that trained on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from birdclef.dataset import MelShardDataset
from birdclef.settings import DistillConfig


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


class PseudoWindows(Dataset):
    """The kept pseudo-labelled soundscape windows, each with its soft label as target and weight 1."""

    def __init__(self, shards: MelShardDataset, labels: pd.DataFrame) -> None:
        self.base = shards
        by_row = labels.set_index("row_id")
        kept = by_row.index[by_row["keep"]]
        position = pd.Series(np.arange(len(shards)), index=shards.rows["row_id"])
        self.rows = position.reindex(kept).dropna().astype(int).to_numpy()
        self.targets = by_row.loc[shards.rows["row_id"].to_numpy()[self.rows], shards.classes].to_numpy(np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.base.input_tensor(int(self.rows[index])), torch.from_numpy(self.targets[index]), torch.tensor(1.0)


class SoundscapeWindows(Dataset):
    """Every soundscape window: its pseudo-label (weight 1) where pseudo_label kept it, else no class target (weight 0).

    What a CNN learns BirdNET's embedding on, beside the labelled chunks: with weight 0 only the
    embedding loss applies to a window.
    """

    def __init__(self, shards: MelShardDataset, labels: pd.DataFrame | None = None) -> None:
        self.base = shards
        self.targets = np.zeros((len(shards), len(shards.classes)), np.float32)
        self.weights = np.zeros(len(shards), np.float32)
        if labels is not None:
            kept = labels[labels["keep"]].set_index("row_id")
            rows = np.flatnonzero(shards.rows["row_id"].isin(kept.index).to_numpy())
            self.targets[rows] = kept.loc[shards.rows["row_id"].to_numpy()[rows], shards.classes].to_numpy(np.float32)
            self.weights[rows] = 1.0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            self.base.input_tensor(index),
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
