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

from birdclef.kinds import checkpoint_kind, load_model
from birdclef.settings import MelConfig

ID_COLUMNS = ["id", "offset_s", "row_id"]


def predict_shards(
    model_paths: Sequence[str | Path],
    shard_paths: Sequence[str | Path],
    mel: MelConfig,
    batch_size: int = 64,
    device: str | None = None,
    embedding_paths: Sequence[str | Path] | None = None,
) -> pd.DataFrame:
    """One row per window of ``shard_paths`` (in file, then row order): ids, then the mean probability per class.

    ``shard_paths``: the windows' mel shards; ``embedding_paths``: their BirdNET embeddings, for birdnet_head models.
    The models must be of one kind (one member's folds, say).
    """
    if not model_paths:
        raise ValueError("no models to predict with")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    loaded = [load_model(path, map_location=dev) for path in model_paths]
    kinds = {checkpoint_kind(payload).input for _, payload in loaded}
    if len(kinds) > 1:
        raise ValueError(f"models of different inputs ({sorted(kinds)}) cannot be averaged in one pass")
    kind = checkpoint_kind(loaded[0][1])
    ds = kind.dataset(shard_paths, mel, embedding_paths)
    models = []
    for path, (model, payload) in zip(model_paths, loaded, strict=True):  # every model checked before any window
        if payload["classes"] != ds.classes:
            raise ValueError(f"{path}: its class list differs from the mel shards'")
        if payload.get("mel_hash") not in (None, mel.hash):
            raise ValueError(f"{path}: trained on mels with hash {payload['mel_hash']}, not {mel.hash}")
        models.append(model.to(dev))
    batches = []
    with torch.inference_mode():
        for x, _, _ in DataLoader(ds, batch_size=batch_size):  # the shards are read once for all models
            x = kind.to_device(x, dev)
            total = sum(torch.sigmoid(m(x).float()).cpu().numpy().astype(np.float64) for m in models)
            batches.append(total / len(models))
    mean = np.concatenate(batches) if batches else np.zeros((0, len(ds.classes)))
    out = ds.rows[ID_COLUMNS].reset_index(drop=True)
    return pd.concat([out, pd.DataFrame(mean, columns=ds.classes)], axis=1)
