import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from birdclef.metrics import class_auc, macro_roc_auc, score_against_solution, score_predictions


def test_hand_worked_example():
    # class 0: positives score 0.9 and 0.4, negatives 0.5 and 0.1 -> pairs won: (0.9>0.5, 0.9>0.1, 0.4>0.1) = 3 of 4
    # class 1: one positive at 0.3 tied with one negative at 0.3, other negatives lower -> (0.5 + 1 + 1) / 3
    # class 2: no positive -> dropped
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]])
    s = np.array([[0.9, 0.2, 0.5], [0.4, 0.3, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.9]])
    np.testing.assert_allclose(class_auc(y, s)[:2], [0.75, 2.5 / 3])
    assert np.isnan(class_auc(y, s)[2])
    assert macro_roc_auc(y, s) == pytest.approx((0.75 + 2.5 / 3) / 2)


def test_agrees_with_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.random((300, 12)) < 0.1
    s = np.round(rng.random((300, 12)) + 0.3 * y, 1)  # rounded: many ties
    keep = y.sum(axis=0) > 0
    expected = roc_auc_score(y[:, keep], s[:, keep], average="macro")
    assert macro_roc_auc(y, s) == pytest.approx(expected, abs=1e-12)


def test_all_positive_and_empty_columns_are_dropped():
    y = np.array([[1, 1], [1, 0]])
    s = np.array([[0.2, 0.9], [0.3, 0.1]])
    assert macro_roc_auc(y, s) == 1.0  # only column 1 counts
    assert np.isnan(macro_roc_auc(np.zeros((3, 2)), np.zeros((3, 2))))
    with pytest.raises(ValueError, match="2-D"):
        class_auc(np.zeros(3), np.zeros(3))


def test_predictions_are_scored_against_their_primary_labels():
    preds = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "primary_label": ["x", "y", "x", "y"],
            "x": [0.9, 0.2, 0.4, 0.5],
            "y": [0.1, 0.8, 0.3, 0.6],
            "z": [0.5, 0.5, 0.5, 0.5],  # no positives: not scored
        }
    )
    # x: positives 0.9, 0.4 vs negatives 0.2, 0.5 -> 3/4; y: positives 0.8, 0.6 vs 0.1, 0.3 -> 1
    assert score_predictions(preds, ["x", "y", "z"]) == pytest.approx((0.75 + 1.0) / 2)


def test_submission_is_scored_by_row_id_and_must_cover_the_solution():
    solution = pd.DataFrame({"row_id": ["s_5", "s_10", "s_15"], "x": [1, 0, 0], "y": [0, 0, 0]})
    pred = pd.DataFrame({"row_id": ["s_15", "s_5", "s_10"], "x": [0.1, 0.9, 0.2], "y": [0.3, 0.3, 0.3]})
    score, per_class = score_against_solution(pred, solution)
    assert score == 1.0 and np.isnan(per_class["y"])
    with pytest.raises(ValueError, match="1 solution rows"):
        score_against_solution(pred.iloc[:2], solution)
