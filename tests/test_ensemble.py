import json

import numpy as np
import pytest
from scipy.special import expit

from birdclef.bundle_predict import to_space
from birdclef.ensemble import (
    _ClassMajorAUC,
    blend,
    class_scores,
    cross_validated_score,
    fit_ensemble,
    fit_weights,
    group_folds,
    round_weights,
)
from birdclef.metrics import class_auc, macro_roc_auc
from birdclef.settings import BLEND_SPACES, EnsembleConfig

N_FILES, WINDOWS, N_CLASSES = 12, 10, 6


def labelled(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Multi-label truth over 12 files of 10 windows, every class with positives, and the file of each row."""
    rng = np.random.default_rng(seed)
    y = (rng.random((N_FILES * WINDOWS, N_CLASSES)) < 0.2).astype(float)
    y[:N_CLASSES] = np.eye(N_CLASSES)  # every class has a positive
    groups = np.repeat([f"file{i}" for i in range(N_FILES)], WINDOWS)
    return y, groups, rng


def member(y: np.ndarray, rng: np.random.Generator, signal: float, classes: slice = slice(None)) -> np.ndarray:
    """Probabilities that know the truth with strength ``signal`` on ``classes`` and guess on the rest."""
    logits = rng.normal(0, 1.5, y.shape)
    logits[:, classes] += signal * (2 * y[:, classes] - 1)
    return expit(logits)


def test_fast_fitting_score_is_the_competition_metric():
    y, _, rng = labelled(5)
    for scores in (rng.random(y.shape), np.round(rng.random(y.shape), 1), np.zeros(y.shape)):  # with ties
        assert _ClassMajorAUC(y)(np.ascontiguousarray(scores.T)) == pytest.approx(macro_roc_auc(y, scores), abs=1e-12)


@pytest.mark.parametrize("method", ["hill_climb", "coordinate"])
def test_noise_member_gets_no_weight_and_the_good_one_the_most(method):
    y, _, rng = labelled()
    members = [rng.random(y.shape), member(y, rng, 2.0)]
    w = fit_weights(members, y, EnsembleConfig(method=method))
    assert w[0] < 0.1 and w[1] > 0.9


def test_complementary_members_share_the_weight_and_beat_each_alone():
    y, _, rng = labelled()
    first_half = member(y, rng, 3.0, slice(0, 3))
    second_half = member(y, rng, 3.0, slice(3, 6))
    w = fit_weights([first_half, second_half], y, EnsembleConfig())
    assert min(w) >= 0.25
    singles = [macro_roc_auc(y, first_half), macro_roc_auc(y, second_half)]
    assert macro_roc_auc(y, blend([first_half, second_half], w, "prob")) > max(singles) + 0.05


@pytest.mark.parametrize("space", BLEND_SPACES)
@pytest.mark.parametrize("method", ["hill_climb", "coordinate", "equal"])
def test_weights_are_non_negative_and_sum_to_one(method, space):
    y, _, rng = labelled(1)
    members = [member(y, rng, s) for s in (0.5, 1.0, 2.0)] + [rng.random(y.shape)]
    w = fit_weights(members, y, EnsembleConfig(method=method, space=space))
    assert w.shape == (4,) and (w >= 0).all() and w.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("space", BLEND_SPACES)
@pytest.mark.parametrize("method", ["hill_climb", "coordinate"])
def test_fitted_blend_is_no_worse_in_sample_than_the_best_member(method, space):
    y, _, rng = labelled(2)
    members = [member(y, rng, s) for s in (0.8, 1.0, 1.2)]
    w = fit_weights(members, y, EnsembleConfig(method=method, space=space))
    best_single = max(macro_roc_auc(y, p) for p in members)
    assert macro_roc_auc(y, blend(members, w, space)) >= best_single


def test_equal_method_and_single_member():
    y, _, rng = labelled()
    members = [member(y, rng, 1.0), member(y, rng, 2.0), rng.random(y.shape)]
    np.testing.assert_allclose(fit_weights(members, y, EnsembleConfig(method="equal")), [1 / 3] * 3)
    assert fit_weights(members[:1], y, EnsembleConfig()).tolist() == [1.0]


def test_rank_transform_averages_ties_and_scales_to_unit_range():
    p = np.array([[0.1, 0.3], [0.5, 0.3], [0.5, 0.3], [0.9, 0.3]])
    np.testing.assert_allclose(to_space(p, "rank"), [[0, 0.5], [0.5, 0.5], [0.5, 0.5], [1, 0.5]])


def test_rank_blend_and_fit_ignore_a_monotone_transform_of_a_member():
    y, _, rng = labelled(3)
    a, b = member(y, rng, 1.0), member(y, rng, 1.5)
    np.testing.assert_allclose(blend([a, b], [0.3, 0.7], "rank"), blend([a**3, b], [0.3, 0.7], "rank"))
    cfg = EnsembleConfig(space="rank")
    np.testing.assert_array_equal(fit_weights([a, b], y, cfg), fit_weights([a**3, b], y, cfg))


def test_prob_and_logit_blends():
    rng = np.random.default_rng(4)
    a, b = rng.random((20, 3)), rng.random((20, 3))
    np.testing.assert_allclose(blend([a, b], [1, 3], "prob"), 0.25 * a + 0.75 * b)
    same = blend([a, a, a], [0.2, 0.3, 0.5], "logit")
    np.testing.assert_allclose(same, np.clip(a, 1e-6, 1 - 1e-6), rtol=1e-9)
    logit = blend([a, b], [0.5, 0.5], "logit")  # geometric mean of the odds
    odds = np.sqrt(a / (1 - a) * b / (1 - b))
    np.testing.assert_allclose(logit, odds / (1 + odds), rtol=1e-6)


def test_group_folds_keep_each_group_on_one_side():
    _, groups, _ = labelled()
    folds = group_folds(groups, 5, seed=0)
    assert len(folds) == 5
    held_out = np.concatenate([test for _, test in folds])
    assert sorted(held_out.tolist()) == list(range(len(groups)))  # every row held out exactly once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    assert len(group_folds(groups[: 3 * WINDOWS], 5, seed=0)) == 3  # fewer groups than folds


def test_cross_validated_score_reports_folds_and_baselines():
    y, groups, rng = labelled()
    members = [member(y, rng, 2.0), rng.random(y.shape)]
    cv = cross_validated_score(members, y, groups, EnsembleConfig(cv_folds=4), names=["good", "noise"])
    assert cv["n_folds"] == 4 and len(cv["per_fold"]) == 4 and cv["reason"] is None
    assert cv["mean"] == pytest.approx(np.mean(cv["per_fold"]))
    assert cv["best_single"]["chosen"] == ["good"] * 4
    assert len(cv["equal"]["per_fold"]) == 4 and len(cv["fold_weights"]) == 4
    assert cv["mean"] > cv["equal"]["mean"]  # dropping the noise member helps on held-out files too


def test_cross_validation_needs_two_groups():
    y, _, rng = labelled()
    cv = cross_validated_score([member(y, rng, 1.0)], y, ["one"] * len(y), EnsembleConfig())
    assert np.isnan(cv["mean"]) and cv["n_folds"] == 0 and "2 groups" in cv["reason"]
    result = fit_ensemble({"only": member(y, rng, 1.0)}, y, ["one"] * len(y), EnsembleConfig())
    assert np.isnan(result["cv"]["mean"]) and result["members"]["only"]["weight"] == 1.0
    assert np.isnan(json.loads(json.dumps(result))["cv"]["best_single"]["mean"])  # NaN round-trips


def test_fit_ensemble_is_json_ready_and_keeps_zero_weight_members():
    y, groups, rng = labelled()
    result = fit_ensemble({"good": member(y, rng, 2.0), "noise": rng.random(y.shape)}, y, groups, EnsembleConfig())
    assert json.loads(json.dumps(result, allow_nan=False)) == result  # plain Python types only
    assert result["members"]["noise"]["weight"] == 0.0 and result["members"]["good"]["weight"] == 1.0
    assert result["n_rows"] == len(y) and result["n_classes_scored"] == N_CLASSES
    assert result["blend_score"] == pytest.approx(result["members"]["good"]["score"])
    assert result["cv"]["n_folds"] == 5 and result["method"] == "hill_climb" and result["space"] == "prob"


def test_fit_ensemble_is_deterministic_given_the_seed():
    y, groups, rng = labelled()
    members = {"a": member(y, rng, 1.0), "b": member(y, rng, 1.0), "c": member(y, rng, 0.5)}
    cfg = EnsembleConfig(method="coordinate", space="rank", seed=3)
    assert json.dumps(fit_ensemble(members, y, groups, cfg)) == json.dumps(fit_ensemble(members, y, groups, cfg))


def test_rounded_weights_still_sum_to_one():
    w = round_weights([1 / 3, 1 / 3, 1 / 3])
    assert sum(w) == pytest.approx(1.0, abs=1e-12) and all(abs(x - 1 / 3) < 1e-5 for x in w)


def test_bad_members_are_named():
    y, groups, rng = labelled()
    good = member(y, rng, 1.0)
    with pytest.raises(ValueError, match="no ensemble members"):
        fit_ensemble({}, y, groups, EnsembleConfig())
    with pytest.raises(ValueError, match="'short'"):
        fit_ensemble({"good": good, "short": good[:-1]}, y, groups, EnsembleConfig())
    with pytest.raises(ValueError, match="'wide'.*y_true"):
        fit_ensemble({"wide": np.hstack([good, good])}, y, groups, EnsembleConfig())
    nanny = good.copy()
    nanny[3, 2] = np.nan
    with pytest.raises(ValueError, match="'nanny' has NaN"):
        fit_ensemble({"good": good, "nanny": nanny}, y, groups, EnsembleConfig())
    with pytest.raises(ValueError, match="groups"):
        fit_ensemble({"good": good}, y, groups[:-1], EnsembleConfig())


def test_bad_ensemble_config_names_the_key():
    with pytest.raises(ValueError, match="ensemble.method must be one of"):
        EnsembleConfig(method="stacking")
    with pytest.raises(ValueError, match="ensemble.space"):
        EnsembleConfig.from_dict({"space": "odds"})
    with pytest.raises(ValueError, match="ensemble.n_iter"):
        EnsembleConfig(n_iter=0)
    with pytest.raises(ValueError, match="ensemble.cv_folds"):
        EnsembleConfig(cv_folds=1)
    with pytest.raises(ValueError, match="unknown ensemble keys"):
        EnsembleConfig.from_dict({"methods": "equal"})
    assert EnsembleConfig.from_dict({"method": "equal"}).to_dict()["method"] == "equal"


def test_class_scores_put_the_blend_beside_the_best_member_per_scored_class():
    y, _, rng = labelled()
    y[:, -1] = 0.0  # a class with no positive is not scored
    good, weak = member(y, rng, 3.0), member(y, rng, 0.5)
    classes = [f"c{i}" for i in range(N_CLASSES)]
    table = class_scores({"teacher/weak": weak, "student/good": good}, y, [0.2, 0.8], "prob", classes)
    assert list(table.columns) == ["blend", "student/good"]
    assert list(table.index) == classes[:-1]
    np.testing.assert_allclose(table["student/good"], class_auc(y, good)[:-1])
    np.testing.assert_allclose(table["blend"], class_auc(y, blend([weak, good], [0.2, 0.8], "prob"))[:-1])
