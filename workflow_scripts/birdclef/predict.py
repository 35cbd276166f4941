"""Predictions of saved models on cached mel windows: what pseudo-labels, ensembles and scores start from.

A model family (a teacher's folds, say) predicts by the mean of its members'
sigmoid probabilities, reading the windows once for all members. On validation
soundscapes built from held-out clips (``birdclef.validation_set``) each window is
predicted instead by the one fold model that did not train on its clips
(``predict_shards_by_fold``). Every model must share the shards' class list and mel
parameters; anything else is refused rather than silently misaligned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from birdclef.dataset import MelShardDataset
from birdclef.kinds import Kind, checkpoint_kind, load_model
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
    kind = _one_kind([payload for _, payload in loaded])
    ds = kind.dataset(shard_paths, mel, embedding_paths)
    models = [
        _checked(path, model, payload, ds, mel, dev) for path, (model, payload) in zip(model_paths, loaded, strict=True)
    ]
    batches = []
    with torch.inference_mode():
        for x, _, _ in DataLoader(ds, batch_size=batch_size):  # the shards are read once for all models
            x = kind.to_device(x, dev)
            total = sum(torch.sigmoid(m(x).float()).cpu().numpy().astype(np.float64) for m in models)
            batches.append(total / len(models))
    mean = np.concatenate(batches) if batches else np.zeros((0, len(ds.classes)))
    out = ds.rows[ID_COLUMNS].reset_index(drop=True)
    return pd.concat([out, pd.DataFrame(mean, columns=ds.classes)], axis=1)


def _one_kind(payloads: Sequence[dict]) -> Kind:
    """The kind of models that must be fed alike (a member's folds); models of different inputs are refused."""
    inputs = {checkpoint_kind(p).input for p in payloads}
    if len(inputs) > 1:
        raise ValueError(f"models of different inputs ({sorted(inputs)}) cannot be averaged in one pass")
    return checkpoint_kind(payloads[0])


def _checked(
    path: str | Path, model: torch.nn.Module, payload: dict, ds: MelShardDataset, mel: MelConfig, dev: torch.device
) -> torch.nn.Module:
    """``model`` (saved at ``path``) on ``dev``; refused when its classes or mel parameters are not the shards'."""
    if payload["classes"] != ds.classes:
        raise ValueError(f"{path}: its class list differs from the mel shards'")
    if payload.get("mel_hash") not in (None, mel.hash):
        raise ValueError(f"{path}: trained on mels with hash {payload['mel_hash']}, not {mel.hash}")
    return model.to(dev)


def predict_shards_by_fold(
    fold_models: Mapping[int, str | Path],
    shard_paths: Sequence[str | Path],
    mel: MelConfig,
    fold_of: Mapping[str, int],
    batch_size: int = 64,
    device: str | None = None,
    embedding_paths: Sequence[str | Path] | None = None,
) -> pd.DataFrame:
    """Like ``predict_shards``, but each window by one model only: that of its soundscape's fold.

    ``fold_models``: fold -> that fold's model (trained on every fold but it); ``fold_of``:
    soundscape id (a window's ``id``) -> the fold whose held-out clips it holds. A window
    whose soundscape has no fold, or whose fold has no model, is an error: it would be
    judged by a model that may have trained on it.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    loaded = {k: load_model(path, map_location=dev) for k, path in fold_models.items()}
    kind = _one_kind([payload for _, payload in loaded.values()]) if loaded else None
    if kind is None:
        raise ValueError("no models to predict with")
    ds = kind.dataset(shard_paths, mel, embedding_paths)
    folds = ds.rows["id"].map(dict(fold_of))
    if folds.isna().any():
        unknown = sorted(set(ds.rows.loc[folds.isna(), "id"]))
        raise ValueError(f"{len(unknown)} soundscapes have no fold in the fold map, e.g. {unknown[:3]}")
    folds = folds.astype(int).to_numpy()
    no_model = sorted(set(folds) - set(fold_models))
    if no_model:
        raise ValueError(f"windows of folds {no_model} but no model of those folds (models of {sorted(fold_models)})")
    models = {k: _checked(fold_models[k], *loaded[k], ds, mel, dev) for k in sorted(set(folds))}
    probs = np.zeros((len(ds), len(ds.classes)))
    with torch.inference_mode():
        for k, model in models.items():
            index = np.flatnonzero(folds == k)
            batches = []
            for x, _, _ in DataLoader(Subset(ds, index.tolist()), batch_size=batch_size):
                batches.append(torch.sigmoid(model(kind.to_device(x, dev)).float()).cpu().numpy().astype(np.float64))
            probs[index] = np.concatenate(batches)
    out = ds.rows[ID_COLUMNS].reset_index(drop=True)
    return pd.concat([out, pd.DataFrame(probs, columns=ds.classes)], axis=1)
