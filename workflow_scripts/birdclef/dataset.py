"""A PyTorch Dataset over cached mel shards: (mel, target, weight) by index, with random access.

Only the small columns (ids, labels, weights) of every shard are held in memory;
a mel is read from its Parquet row group when asked for, and the last few row
groups read are kept (the loader's samplers often ask for neighbours). File
handles are opened lazily in each process, so ``num_workers > 0`` works.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from birdclef.mel_shards import decode_mel, read_meta
from birdclef.settings import MelConfig

LABEL_COLUMNS = ["id", "offset_s", "row_id", "primary", "secondary", "weight"]


class MelShardDataset(Dataset):
    """Rows of ``paths`` (mel shards) in file order, then row order.

    ``mel``: the frontend the caller expects; a shard built otherwise is refused.
    ``secondary_target``: the target value of secondary labels (primary is 1.0).
    ``cache_groups``: row groups kept decoded per process.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        mel: MelConfig,
        secondary_target: float = 0.5,
        cache_groups: int = 8,
    ) -> None:
        self.paths = [str(p) for p in paths]
        if not self.paths:
            raise ValueError("no mel shards given")
        metas = [read_meta(p, mel) for p in self.paths]
        self.classes = metas[0].classes
        for p, m in zip(self.paths, metas, strict=True):
            if m.classes != self.classes or m.mel_shape != metas[0].mel_shape:
                raise ValueError(f"{p}: its class list or mel shape differs from {self.paths[0]}'s")
        self.mel_shape = metas[0].mel_shape
        self.secondary_target = secondary_target
        self.cache_groups = cache_groups

        frames, where = [], []
        for k, p in enumerate(self.paths):
            f = pq.ParquetFile(p)
            frames.append(f.read(columns=LABEL_COLUMNS).to_pandas())
            for g in range(f.metadata.num_row_groups):
                n = f.metadata.row_group(g).num_rows
                where.append(np.stack([np.full(n, k), np.full(n, g), np.arange(n)], axis=1))
        self.rows = pd.concat(frames, ignore_index=True)
        self._where = np.concatenate(where) if where else np.zeros((0, 3), dtype=np.int64)
        self._files: dict[int, pq.ParquetFile] = {}
        self._groups: OrderedDict[tuple[int, int], list] = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_groups"] = {}, OrderedDict()
        return state

    def __len__(self) -> int:
        return len(self.rows)

    def _group(self, shard: int, group: int) -> list:
        key = (shard, group)
        if key in self._groups:
            self._groups.move_to_end(key)
            return self._groups[key]
        if shard not in self._files:
            self._files[shard] = pq.ParquetFile(self.paths[shard])
        blobs = self._files[shard].read_row_group(group, columns=["mel"]).column(0).to_pylist()
        self._groups[key] = blobs
        if len(self._groups) > self.cache_groups:
            self._groups.popitem(last=False)
        return blobs

    def mel(self, index: int) -> np.ndarray:
        """The stored float16 log-mel of row ``index``, (n_mels, frames)."""
        shard, group, row = self._where[index]
        return decode_mel(self._group(int(shard), int(group))[row], self.mel_shape)

    def target(self, index: int) -> np.ndarray:
        """Primary 1.0, secondary ``secondary_target``, the rest 0 (all 0 for an unlabelled window)."""
        t = np.zeros(len(self.classes), dtype=np.float32)
        row = self.rows.iloc[index]
        t[list(row["secondary"])] = self.secondary_target
        if row["primary"] >= 0:
            t[row["primary"]] = 1.0
        return t

    def mel_tensor(self, index: int) -> torch.Tensor:
        """Row ``index``'s mel as the model takes it: float32, (1, n_mels, frames)."""
        return torch.from_numpy(self.mel(index).astype(np.float32))[None]

    def input_tensor(self, index: int) -> torch.Tensor:
        """What a model takes for row ``index``: here its mel; BirdNET's embedding in ``EmbeddingDataset``."""
        return self.mel_tensor(index)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input (without the batch)."""
        return (1, *self.mel_shape)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        weight = torch.tensor(float(self.rows["weight"].iat[index]), dtype=torch.float32)
        return self.input_tensor(index), torch.from_numpy(self.target(index)), weight


class EmbeddingDataset(MelShardDataset):
    """The rows (keys, labels, weights) of mel shards, with BirdNET's embedding of each window as the input.

    The mels themselves are never read; the embedding shards must hold every row (see birdclef.embeddings).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        embedding_paths: Sequence[str | Path],
        mel: MelConfig,
        secondary_target: float = 0.5,
    ) -> None:
        from birdclef.embeddings import read_embeddings

        super().__init__(paths, mel, secondary_target)
        self.embeddings = read_embeddings(embedding_paths).aligned_to(self.rows).embeddings

    def input_tensor(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.embeddings[index])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.embeddings.shape[1],)
