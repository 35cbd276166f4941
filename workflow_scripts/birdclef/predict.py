"""Predictions of saved models on cached mel windows: what pseudo-labels, ensembles and scores start from.

A model family (a teacher's folds, say) predicts by the mean of its members'
sigmoid probabilities, reading the windows once for all members. Every model
must share the shards' class list and mel parameters; anything else is refused
rather than silently misaligned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from birdclef.dataset import MelShardDataset
from birdclef.models import load_model
from birdclef.settings import MelConfig

ID_COLUMNS = ["id", "offset_s", "row_id"]


def predict_shards(
    model_paths: Sequence[str | Path],
    shard_paths: Sequence[str | Path],
    mel: MelConfig,
    batch_size: int = 64,
    device: str | None = None,
) -> pd.DataFrame:
    """One row per window of ``shard_paths`` (in file, then row order): ids, then the mean probability per class."""
    if not model_paths:
        raise ValueError("no models to predict with")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ds = MelShardDataset(shard_paths, mel)
    models = []
    for path in model_paths:  # every model checked before any window is read
        model, payload = load_model(path, map_location=dev)
        if payload["classes"] != ds.classes:
            raise ValueError(f"{path}: its class list differs from the mel shards'")
        if payload.get("mel_hash") not in (None, mel.hash):
            raise ValueError(f"{path}: trained on mels with hash {payload['mel_hash']}, not {mel.hash}")
        models.append(model.to(dev))
    batches = []
    with torch.inference_mode():
        for x, _, _ in DataLoader(ds, batch_size=batch_size):  # the shards are read once for all models
            x = x.to(dev)
            total = sum(torch.sigmoid(m(x).float()).cpu().numpy().astype(np.float64) for m in models)
            batches.append(total / len(models))
    mean = np.concatenate(batches) if batches else np.zeros((0, len(ds.classes)))
    out = ds.rows[ID_COLUMNS].reset_index(drop=True)
    return pd.concat([out, pd.DataFrame(mean, columns=ds.classes)], axis=1)
