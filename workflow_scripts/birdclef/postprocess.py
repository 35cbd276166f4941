"""Post-processing of soundscape predictions: use what the neighbouring windows and the whole file say.

A bird that calls in one 5 s window often calls in the next, and a species heard
clearly somewhere in a recording is more likely in its other windows too. Three steps,
in this order, each one switched off by its neutral setting:

1. ``smooth``: each window's probabilities become a weighted mean of the previous
   window, itself and the next (first and last window: itself and its one neighbour).
2. ``power_low_ranked``: per file, the classes outside the top-k by their highest
   probability in the file get ``p ** power``; a power above 1 quiets classes unlikely
   to be in the file at all (as BirdCLEF 2025 solutions did).
3. ``scale_by_file_max``: ``p * ((1 - a) + a * filemax)``, filemax being the class's
   highest probability over the file: a window counts as much as the file is sure.

Rows of one file are contiguous and in time order; no step mixes windows of different
files. Work is vectorised over all rows at once (hundreds of files, hundreds of
classes); per file there are only row-index bounds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from birdclef.settings import PostprocessConfig, weights_summing_to_one


def _checked(probs: np.ndarray, file_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """probs as float64, each row's file start and file length; errors if files are not contiguous."""
    p = np.asarray(probs, dtype=np.float64)
    ids = np.asarray(file_ids)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (windows x classes), got shape {p.shape}")
    if ids.shape != (len(p),):
        raise ValueError(f"file_ids has shape {ids.shape} for {len(p)} windows")
    if np.isnan(p).any():
        raise ValueError("probs has NaN values")
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, dtype=int)
    if len(starts) != len(np.unique(ids)):
        raise ValueError("the windows of each file must be contiguous rows")
    return p, starts, np.diff(np.r_[starts, len(p)])


def _file_max(p: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each class's highest probability in the row's file, one row per window."""
    return np.repeat(np.maximum.reduceat(p, starts, axis=0), lengths, axis=0)


def smooth(
    probs: np.ndarray,
    file_ids: Sequence[str],
    weights: Sequence[float] | None,
    edge: Sequence[float],
) -> np.ndarray:
    """Weighted mean of previous, own and next window (``weights``); at a file's ends, own and neighbour (``edge``).

    A file with one window is left as is; ``weights=None`` leaves everything as is.
    """
    p, starts, lengths = _checked(probs, file_ids)
    if weights is None or len(p) == 0:
        return p.copy()
    w_prev, w_self, w_next = weights_summing_to_one(weights, 3, "smoothing")
    e_self, e_other = weights_summing_to_one(edge, 2, "smoothing_edge")
    first = np.zeros(len(p), dtype=bool)
    first[starts] = True
    last = np.zeros(len(p), dtype=bool)
    last[starts + lengths - 1] = True
    # Shifted copies; where the shift crosses a file boundary the value is masked out below.
    prev = np.vstack([p[:1], p[:-1]])
    nxt = np.vstack([p[1:], p[-1:]])
    out = w_prev * prev + w_self * p + w_next * nxt
    only_first = first & ~last
    only_last = last & ~first
    out[only_first] = e_self * p[only_first] + e_other * nxt[only_first]
    out[only_last] = e_self * p[only_last] + e_other * prev[only_last]
    out[first & last] = p[first & last]
    return np.clip(out, 0.0, 1.0)


def power_low_ranked(probs: np.ndarray, file_ids: Sequence[str], top_k: int, power: float) -> np.ndarray:
    """Per file, ``p ** power`` for the classes outside the top_k by their highest probability in the file.

    Ties in the file maximum go to the lower class index, so the result does not depend on sort details.
    """
    p, starts, lengths = _checked(probs, file_ids)
    if power == 1 or len(p) == 0 or top_k >= p.shape[1]:
        return p.copy()
    file_max = np.maximum.reduceat(p, starts, axis=0)
    order = np.argsort(-file_max, axis=1, kind="stable")
    keep = np.zeros_like(file_max, dtype=bool)
    np.put_along_axis(keep, order[:, :top_k], True, axis=1)
    keep = np.repeat(keep, lengths, axis=0)
    return np.clip(np.where(keep, p, np.power(np.clip(p, 0.0, 1.0), power)), 0.0, 1.0)


def scale_by_file_max(probs: np.ndarray, file_ids: Sequence[str], weight: float) -> np.ndarray:
    """``p * ((1 - weight) + weight * filemax)``, filemax the class's highest probability in the file."""
    p, starts, lengths = _checked(probs, file_ids)
    if weight == 0 or len(p) == 0:
        return p.copy()
    return np.clip(p * ((1 - weight) + weight * _file_max(p, starts, lengths)), 0.0, 1.0)


def postprocess(probs: np.ndarray, file_ids: Sequence[str], cfg: PostprocessConfig) -> np.ndarray:
    """Smoothing, then the power on low-ranked classes, then scaling by the file maximum; probabilities in [0, 1]."""
    p = smooth(probs, file_ids, cfg.smoothing, cfg.smoothing_edge)
    p = power_low_ranked(p, file_ids, cfg.low_rank_top_k, cfg.low_rank_power)
    return scale_by_file_max(p, file_ids, cfg.file_max_weight)
