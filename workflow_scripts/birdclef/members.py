"""Ensemble members, and the labelled rows their weights are fitted on.

A member is a trained model named ``<stage>/<name>`` (``student/regnety_sed``),
predicting by the mean of its folds. Its weight is fitted on one of two tables:
- validation soundscapes: every member's predictions on the same windows, the
  truth from ``solution.csv``, and the soundscape as the group of each window;
- out-of-fold chunks: every member's ``oof.parquet`` rows (each chunk predicted by
  the fold that did not train on it), the truth from the chunk's primary label,
  and the clip as the group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def validation_rows(
    predictions: Mapping[str, pd.DataFrame], solution: pd.DataFrame
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[str]]:
    """Per member the predictions in the solution's row order, the 0/1 truth, each row's soundscape, the classes."""
    classes = [c for c in solution.columns if c != "row_id"]
    row_ids = solution["row_id"].astype(str)
    probs = {}
    for member, pred in predictions.items():
        missing = set(row_ids) - set(pred["row_id"])
        if missing:
            raise ValueError(f"{member}: no prediction for {len(missing)} solution rows, e.g. {sorted(missing)[:3]}")
        absent = [c for c in classes if c not in pred.columns]
        if absent:
            raise ValueError(f"{member}: the solution's classes {absent[:5]} are not among its outputs")
        probs[member] = pred.set_index("row_id").loc[row_ids, classes].to_numpy(np.float64)
    groups = row_ids.str.rsplit("_", n=1).str[0].to_numpy()
    return probs, solution[classes].to_numpy(np.float64), groups, classes


def oof_rows(
    oofs: Mapping[str, pd.DataFrame], classes: Sequence[str]
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per member its out-of-fold predictions on the same chunks, the one-hot primary labels, each chunk's clip."""
    keys = ["id", "offset_s"]
    reference = None
    probs = {}
    for member, oof in oofs.items():
        table = oof.sort_values(keys, kind="stable").reset_index(drop=True)
        if reference is None:
            reference = table[[*keys, "primary_label"]]
        elif not table[keys].equals(reference[keys]):
            raise ValueError(f"{member}: its out-of-fold rows are not the other members' chunks (other folds or data?)")
        probs[member] = table[list(classes)].to_numpy(np.float64)
    if reference is None:
        raise ValueError("no members")
    truth = (reference["primary_label"].to_numpy()[:, None] == np.asarray(classes)[None, :]).astype(np.float64)
    return probs, truth, reference["id"].to_numpy()
