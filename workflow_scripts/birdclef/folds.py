"""The k-fold split every model shares: stratified by primary label, grouped so copies never straddle folds.

Clips are grouped by their dedup group (``dup_group``: a recording and its
copies) and by author, joined transitively (a copy by another author pulls both
authors' clips together). An "author" that holds more than ``1 / n_folds`` of
the clips is a collection name rather than a person (NIPS4B lists every clip
under "nips4b"), and grouping by it would put everything in one fold: such
authors are ignored, and logged.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from birdclef.shards import shard_of

log = logging.getLogger(__name__)


def fold_groups(clips: pd.DataFrame, n_folds: int, by_author: bool = True) -> np.ndarray:
    """A group number per clip: connected components of 'same dup_group' and 'same (real) author'."""
    n = len(clips)
    keys = [clips["dup_group"].astype(str).radd("dup:")]
    if by_author:
        author = clips["author"].fillna("").astype(str)
        share = author.map(author.value_counts()) / max(n, 1)
        collective = (share > 1 / n_folds) & (author != "")
        for name in sorted(author[collective].unique()):
            log.info(
                "author %r holds %.0f%% of the clips: not used for grouping", name, 100 * share[author == name].iloc[0]
            )
        keys.append(author.where(~collective & (author != ""), None).radd("author:"))
    # a bipartite graph: clip nodes 0..n-1, one node per dup group and per author
    rows, cols, offset = [], [], n
    for key in keys:
        codes, uniques = pd.factorize(key)  # None -> -1: no link
        valid = codes >= 0
        rows.append(np.flatnonzero(valid))
        cols.append(offset + codes[valid])
        offset += len(uniques)
    rows_a, cols_a = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows_a)), (rows_a, cols_a)), shape=(offset, offset))
    _, component = connected_components(graph, directed=False)
    return pd.factorize(component[:n])[0]


def assign_folds(clips: pd.DataFrame, n_folds: int = 5, seed: int = 0, by_author: bool = True) -> pd.DataFrame:
    """clip_id, fold (0..n_folds-1) and group for every clip of ``clips`` (needs primary_label, dup_group, author)."""
    if n_folds < 2:
        raise ValueError(f"folds.n_folds must be >= 2, got {n_folds}")
    clips = clips.sort_values("clip_id").reset_index(drop=True)
    groups = fold_groups(clips, n_folds, by_author)
    if len(np.unique(groups)) < n_folds:
        raise ValueError(f"only {len(np.unique(groups))} independent groups of clips for folds.n_folds = {n_folds}")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.full(len(clips), -1)
    for k, (_, held_out) in enumerate(splitter.split(clips, clips["primary_label"], groups)):
        fold[held_out] = k
    return pd.DataFrame({"clip_id": clips["clip_id"], "fold": fold, "group": groups})


def soundscape_fold(soundscape_ids: pd.Series | list[str], n_folds: int) -> np.ndarray:
    """The soundscape fold (0..n_folds-1) of each unlabelled soundscape id, by a stable hash of the id.

    Soundscape fold k goes with clip fold k: the model of fold k (every stage) trains on neither
    the clips of fold k nor the windows of soundscape fold k, so it is the one model of its
    family that may pseudo-label those windows. A hash, not a balanced split, so that adding a
    soundscape moves no other soundscape to another fold.
    """
    return np.array([shard_of(f"soundscape-fold:{s}", n_folds) for s in soundscape_ids], dtype=np.int64)
