"""Ensemble weights: which mix of the members' predictions scores best on the competition metric.

Every member gives a probability matrix over the same rows (5 s windows) and columns
(classes). The blend is a weighted mean, non-negative weights summing to one, in one of
three spaces:

- ``prob``: the probabilities themselves.
- ``rank``: per class, each row's rank among the rows (ties share their mean rank),
  scaled to 0..1. The metric is a per-class ROC-AUC, so only the order of the rows in a
  column counts; ranks put members with different calibration on one footing.
- ``logit``: the mean of the logits, back through a sigmoid (a geometric-style mean
  that lets one confident member speak louder than in ``prob``).

Weights are fitted to maximise macro ROC-AUC (``birdclef.metrics.macro_roc_auc``):

- ``hill_climb``: Caruana et al. (2004) ensemble selection with replacement. Start from
  the best member; add, again and again, the member (possibly one already in) whose
  addition raises the score most; stop after ``n_iter`` additions or when none helps.
  Weights are the counts over the total, so they stay on a coarse grid, which is itself
  a guard against fitting noise.
- ``coordinate``: coordinate ascent on the simplex. One member's weight moves up or down
  by a step while the others share the rest in their current proportions; a move is
  kept when it raises the score. Steps shrink from 0.2 to 0.01. Derivative-free because
  the metric is a step function of the weights.
- ``equal``: equal weights, the baseline a fitted mix has to beat.

All are deterministic; the seed only shuffles the groups into cross-validation folds.
Weights fitted and scored on the same rows flatter themselves, so
``cross_validated_score`` fits on some soundscapes and scores on the others, next to the
best single member and equal weights scored the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from birdclef.bundle_predict import blend as blend_members  # the bundle blends as the fit assumed
from birdclef.bundle_predict import to_space
from birdclef.metrics import class_auc, macro_roc_auc
from birdclef.settings import BLEND_SPACES, EnsembleConfig

log = logging.getLogger(__name__)

COORDINATE_STEPS = (0.2, 0.1, 0.05, 0.02, 0.01)
MIN_GAIN = 1e-9  # a score must rise by more than float noise for a move to count
WEIGHT_DIGITS = 6


def _check_space(space: str) -> None:
    if space not in BLEND_SPACES:
        raise ValueError(f"space must be one of {BLEND_SPACES}, got {space!r}")


def _check_members(
    member_probs: Sequence[np.ndarray], y_true: np.ndarray | None = None, names: Sequence[str] | None = None
) -> list[np.ndarray]:
    """The members as float64 arrays, after the checks that name the member at fault."""
    if len(member_probs) == 0:
        raise ValueError("no ensemble members given")
    names = list(names) if names is not None else [f"member {i}" for i in range(len(member_probs))]
    arrays = [np.asarray(p, dtype=np.float64) for p in member_probs]
    if y_true is not None:
        y_true = np.asarray(y_true)
        if y_true.ndim != 2:
            raise ValueError(f"y_true must be 2-D (rows x classes), got shape {y_true.shape}")
        if not np.isfinite(y_true.astype(np.float64)).all():
            raise ValueError("y_true has NaN or infinite values")
    expected = y_true.shape if y_true is not None else arrays[0].shape
    what = "y_true" if y_true is not None else f"member {names[0]!r}"
    for name, p in zip(names, arrays, strict=True):
        if p.ndim != 2:
            raise ValueError(f"member {name!r} must be 2-D (rows x classes), got shape {p.shape}")
        if p.shape != expected:
            raise ValueError(f"member {name!r} has shape {p.shape}, but {what} has {expected}")
        if not np.isfinite(p).all():
            raise ValueError(f"member {name!r} has NaN or infinite predictions")
        if p.min() < 0 or p.max() > 1:
            raise ValueError(f"member {name!r} has predictions outside [0, 1]")
    return arrays


def blend(member_probs: Sequence[np.ndarray], weights: Sequence[float], space: str) -> np.ndarray:
    """The weighted mean of the members in ``space``, back as scores in 0..1 (weights are normalised to sum 1).

    Rank space ranks the rows given; the metric is per class over all rows, so that is the right set.
    """
    _check_space(space)
    arrays = _check_members(member_probs)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(arrays),):
        raise ValueError(f"need one weight per member ({len(arrays)}), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")
    return blend_members(arrays, w, space)


def scored_classes(y_true: np.ndarray) -> np.ndarray:
    """Mask of the classes the metric scores: those with at least one positive and one negative row."""
    positive = np.asarray(y_true) > 0.5
    n_pos = positive.sum(axis=0)
    return (n_pos > 0) & (n_pos < len(positive))


def _best_index(scores: Sequence[float]) -> int:
    """The first index of the highest score, NaN counting lowest: ties go to the earlier member."""
    return int(np.argmax(np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)))


class _ClassMajorAUC:
    """Macro ROC-AUC for scores laid out classes x rows, the truth fixed: the metric, several times faster.

    The fits score hundreds of candidate blends on the same rows. ``class_auc`` ranks every
    column with ``rankdata``; here each class's row is sorted and only its (few) positives are
    placed by binary search, their average rank being (#below + #below-or-equal + 1) / 2. The
    result is the same number (ties count one half); a test holds it to ``macro_roc_auc``.
    Every class passed in must have positives and negatives (``scored_classes``).
    """

    def __init__(self, y_true: np.ndarray) -> None:
        positive = np.asarray(y_true).T > 0.5
        self.positives = [np.flatnonzero(row) for row in positive]
        n_pos = positive.sum(axis=1).astype(np.float64)
        self.offset = n_pos * (n_pos + 1) / 2
        self.pairs = n_pos * (positive.shape[1] - n_pos)

    def __call__(self, scores: np.ndarray) -> float:
        ordered = np.sort(scores, axis=1)
        rank_sums = np.empty(len(self.positives))
        for c, rows in enumerate(self.positives):
            values = scores[c, rows]
            below = np.searchsorted(ordered[c], values, side="left")
            up_to = np.searchsorted(ordered[c], values, side="right")
            rank_sums[c] = (below + up_to + 1).sum() / 2
        return float(np.mean((rank_sums - self.offset) / self.pairs))


def _hill_climb(stack: np.ndarray, score: _ClassMajorAUC, n_iter: int) -> np.ndarray:
    # The score of a sum equals that of the mean (AUC ignores positive scaling) and, in logit space,
    # that of its sigmoid (monotone), so sums are scored as they are.
    singles = [score(s) for s in stack]
    first = _best_index(singles)
    counts = np.zeros(len(stack))
    counts[first] = 1
    total, current = stack[first].copy(), singles[first]
    for _ in range(n_iter):
        scores = [score(total + s) for s in stack]
        best = _best_index(scores)
        if not scores[best] > current + MIN_GAIN:
            break
        counts[best] += 1
        total += stack[best]
        current = scores[best]
    return counts / counts.sum()


def _with_weight(w: np.ndarray, i: int, value: float) -> np.ndarray:
    """``w`` with member i at ``value`` and the others sharing 1 - value in their current proportions."""
    others = np.delete(w, i)
    rest = others.sum()
    others = others * (1 - value) / rest if rest > 0 else np.full(len(others), (1 - value) / len(others))
    return np.insert(others, i, value)


def _coordinate(stack: np.ndarray, score: _ClassMajorAUC, n_iter: int) -> np.ndarray:
    m = len(stack)
    singles = [score(s) for s in stack]
    equal = np.full(m, 1.0 / m)
    # Starting from the better of equal weights and the best member keeps the result at least as good as both.
    w, current = equal, score(np.tensordot(equal, stack, axes=1))
    best = _best_index(singles)
    if not current >= singles[best]:
        w, current = np.eye(m)[best], singles[best]
    for step in COORDINATE_STEPS:
        for _ in range(n_iter):
            improved = False
            for i in range(m):
                for value in (min(w[i] + step, 1.0), max(w[i] - step, 0.0)):
                    if value == w[i]:
                        continue
                    candidate = _with_weight(w, i, value)
                    candidate_score = score(np.tensordot(candidate, stack, axes=1))
                    if candidate_score > current + MIN_GAIN:
                        w, current, improved = candidate, candidate_score, True
                        break
            if not improved:
                break
    return w


def fit_weights(member_probs: Sequence[np.ndarray], y_true: np.ndarray, cfg: EnsembleConfig) -> np.ndarray:
    """Non-negative weights summing to one that maximise macro ROC-AUC of the blend on these rows."""
    arrays = _check_members(member_probs, y_true)
    m = len(arrays)
    if m == 1:
        return np.ones(1)
    if cfg.method == "equal":
        return np.full(m, 1.0 / m)
    scored = scored_classes(y_true)
    if not scored.any():
        log.warning("no class has both positive and negative rows: nothing to fit, equal weights")
        return np.full(m, 1.0 / m)
    # Only scored columns change the metric; dropping the rest saves time in every evaluation.
    # Classes x rows, so that each class's scores are contiguous for sorting.
    stack = np.stack([to_space(p[:, scored], cfg.space).T for p in arrays])
    score = _ClassMajorAUC(np.asarray(y_true)[:, scored])
    if cfg.method == "hill_climb":
        return _hill_climb(stack, score, cfg.n_iter)
    return _coordinate(stack, score, cfg.n_iter)


def group_folds(groups: Sequence[str], n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, held-out rows) per fold, all rows of a group on one side; min(n_folds, n_groups) folds."""
    groups = np.asarray(groups)
    k = min(n_folds, len(np.unique(groups)))
    if k < 2:
        raise ValueError(f"need at least 2 groups for cross-validation, got {len(np.unique(groups))}")
    splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def _mean(scores: Sequence[float]) -> float:
    finite = [s for s in scores if math.isfinite(s)]
    return float(np.mean(finite)) if finite else float("nan")


def cross_validated_score(
    member_probs: Sequence[np.ndarray],
    y_true: np.ndarray,
    groups: Sequence[str],
    cfg: EnsembleConfig,
    names: Sequence[str] | None = None,
) -> dict:
    """Held-out macro ROC-AUC of the fitted blend, with folds by group (soundscape), beside two baselines.

    Returns {"mean", "per_fold", "n_folds", "n_groups", "fold_weights", "reason",
    "best_single": {"mean", "per_fold", "chosen"}, "equal": {"mean", "per_fold"}}. The best
    single member is chosen on each fold's training rows, as the weights are. A fold whose
    held-out rows have no scored class scores NaN and is left out of the mean. With fewer than
    2 groups the means are NaN and ``reason`` says why.
    """
    arrays = _check_members(member_probs, y_true, names)
    names = list(names) if names is not None else [str(i) for i in range(len(arrays))]
    y_true = np.asarray(y_true)
    groups = np.asarray(groups)
    if len(groups) != len(y_true):
        raise ValueError(f"groups has {len(groups)} entries for {len(y_true)} rows")
    n_groups = len(np.unique(groups))
    result: dict = {"mean": float("nan"), "per_fold": [], "n_folds": 0, "n_groups": n_groups, "fold_weights": []}
    result["best_single"] = {"mean": float("nan"), "per_fold": [], "chosen": []}
    result["equal"] = {"mean": float("nan"), "per_fold": []}
    if n_groups < 2:
        result["reason"] = f"cross-validation needs at least 2 groups (soundscapes), got {n_groups}"
        log.warning(result["reason"])
        return result
    result["reason"] = None
    equal = np.full(len(arrays), 1.0 / len(arrays))
    folds = group_folds(groups, cfg.cv_folds, cfg.seed)
    for train, test in folds:
        train_probs, test_probs = [p[train] for p in arrays], [p[test] for p in arrays]
        weights = fit_weights(train_probs, y_true[train], cfg)
        result["per_fold"].append(macro_roc_auc(y_true[test], blend(test_probs, weights, cfg.space)))
        result["fold_weights"].append([float(w) for w in weights])
        # One member's AUC is the same in every space: the transforms are monotone per class.
        best = _best_index([macro_roc_auc(y_true[train], p) for p in train_probs])
        result["best_single"]["per_fold"].append(macro_roc_auc(y_true[test], test_probs[best]))
        result["best_single"]["chosen"].append(names[best])
        result["equal"]["per_fold"].append(macro_roc_auc(y_true[test], blend(test_probs, equal, cfg.space)))
    result["n_folds"] = len(folds)
    for part in (result, result["best_single"], result["equal"]):
        part["mean"] = _mean(part["per_fold"])
    return result


def round_weights(weights: Sequence[float], digits: int = WEIGHT_DIGITS) -> list[float]:
    """Weights rounded to ``digits``, the largest absorbing the rounding so that they still sum to 1."""
    w = np.round(np.asarray(weights, dtype=np.float64), digits)
    top = int(np.argmax(w))
    w[top] = round(1.0 - (w.sum() - w[top]), digits)
    return [float(x) for x in w]


def _jsonable(value: object) -> object:
    """Numpy scalars as Python ones, containers walked. NaN stays NaN: readers (plots, logs) expect floats."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def fit_ensemble(
    members: Mapping[str, np.ndarray], y_true: np.ndarray, groups: Sequence[str], cfg: EnsembleConfig
) -> dict:
    """Fitted weights with their in-sample and cross-validated scores, ready for results/ensemble/weights.json.

    {"method", "space", "n_rows", "n_classes_scored", "members": {name: {"weight", "score"}},
    "blend_score", "cv"}. Every member is listed, weight 0.0 included. Scores that cannot be computed are NaN
    (``json.dumps`` writes them as ``NaN``, which Python's json reads back).
    """
    names = list(members)
    arrays = _check_members([members[n] for n in names], y_true, names)
    y_true = np.asarray(y_true)
    if len(groups) != len(y_true):
        raise ValueError(f"groups has {len(groups)} entries for {len(y_true)} rows")
    weights = round_weights(fit_weights(arrays, y_true, cfg))
    blend_score = macro_roc_auc(y_true, blend(arrays, weights, cfg.space))
    cv = cross_validated_score(arrays, y_true, groups, cfg, names=names)
    log.info(
        "ensemble (%s, %s): in-sample %.4f, cross-validated %.4f (best single %.4f, equal %.4f); weights %s",
        cfg.method,
        cfg.space,
        blend_score,
        cv["mean"],
        cv["best_single"]["mean"],
        cv["equal"]["mean"],
        dict(zip(names, weights, strict=True)),
    )
    return _jsonable(
        {
            "method": cfg.method,
            "space": cfg.space,
            "n_rows": int(len(y_true)),
            "n_classes_scored": int(scored_classes(y_true).sum()),
            "members": {
                n: {"weight": w, "score": macro_roc_auc(y_true, p)}
                for n, w, p in zip(names, weights, arrays, strict=True)
            },
            "blend_score": blend_score,
            "cv": cv,
        }
    )


def class_scores(
    members: Mapping[str, np.ndarray], y_true: np.ndarray, weights: Sequence[float], space: str, classes: Sequence[str]
) -> pd.DataFrame:
    """ROC-AUC per scored class (rows) of the blend and of the best single member (columns 'blend' and its name)."""
    names = list(members)
    arrays = [np.asarray(members[n], dtype=np.float64) for n in names]
    best = names[_best_index([macro_roc_auc(y_true, a) for a in arrays])]
    table = pd.DataFrame(
        {"blend": class_auc(y_true, blend(arrays, weights, space)), best: class_auc(y_true, members[best])},
        index=pd.Index(list(classes), name="class"),
    )
    return table[scored_classes(y_true)]
