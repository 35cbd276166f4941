"""The competition metric: macro ROC-AUC over the classes that have at least one positive.

BirdCLEF scores with scikit-learn's ``roc_auc_score(..., average="macro")`` after
dropping the solution columns without a positive. A class whose every row is
positive has no ROC curve either; it is dropped too (scikit-learn would raise).
This is one implementation, rank-based, used for validation, ensembles and scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def class_auc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """ROC-AUC per column (NaN where a column lacks positives or negatives); ties count one half."""
    y_true = np.asarray(y_true) > 0.5
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true and y_score must be 2-D and alike, got {y_true.shape} and {y_score.shape}")
    ranks = rankdata(y_score, axis=0)  # average ranks: ties count one half
    n_pos = y_true.sum(axis=0)
    n_neg = len(y_true) - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * y_true).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def macro_roc_auc(y_true: np.ndarray | pd.DataFrame, y_score: np.ndarray | pd.DataFrame) -> float:
    """Mean ROC-AUC over the classes with at least one positive (and one negative); NaN if there are none."""
    auc = class_auc(np.asarray(y_true), np.asarray(y_score))
    return float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")


OOF_ID_COLUMNS = ["id", "offset_s", "primary_label"]  # then one probability column per class


def score_predictions(predictions: pd.DataFrame, classes: list[str]) -> float:
    """Macro ROC-AUC of prediction rows (a ``primary_label`` column and one probability column per class).

    Out-of-fold predictions carry their chunk's primary label; every chunk of a
    clip counts as one row, as every window of a soundscape does.
    """
    truth = (predictions["primary_label"].to_numpy()[:, None] == np.asarray(classes)[None, :]).astype(np.float32)
    return macro_roc_auc(truth, predictions[classes].to_numpy())


def score_against_solution(predictions: pd.DataFrame, solution: pd.DataFrame) -> tuple[float, pd.Series]:
    """Macro ROC-AUC (and per class) of ``predictions`` against a Kaggle ``solution`` table, matched by row_id.

    Both have a ``row_id`` column and one column per class; every solution row must be predicted.
    """
    classes = [c for c in solution.columns if c != "row_id"]
    missing = set(solution["row_id"]) - set(predictions["row_id"])
    if missing:
        raise ValueError(f"{len(missing)} solution rows have no prediction, e.g. {sorted(missing)[:3]}")
    pred = predictions.set_index("row_id").loc[solution["row_id"], classes].to_numpy()
    auc = class_auc(solution[classes].to_numpy(), pred)
    score = float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")
    return score, pd.Series(auc, index=classes)
