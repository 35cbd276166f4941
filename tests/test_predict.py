import numpy as np
import pandas as pd
import pytest

from birdclef.predict import predict_shards, predict_shards_by_fold

from conftest import SHARD_CLASSES as CLASSES
from conftest import SHARD_MEL as MEL
from conftest import saved_model


def test_a_family_predicts_the_mean_of_its_members(soundscape_shard, tmp_path):
    a, b = saved_model(tmp_path / "a.pt", 0), saved_model(tmp_path / "b.pt", 1)
    pa, pb = predict_shards([a], [soundscape_shard], MEL), predict_shards([b], [soundscape_shard], MEL)
    both = predict_shards([a, b], [soundscape_shard], MEL, batch_size=5)
    windows = pd.read_parquet(soundscape_shard, columns=["row_id"])
    assert list(both["row_id"]) == list(windows["row_id"])  # every window, in order
    assert list(both.columns) == ["id", "offset_s", "row_id", *CLASSES]
    np.testing.assert_allclose(both[CLASSES], (pa[CLASSES] + pb[CLASSES]) / 2, rtol=1e-5, atol=1e-6)
    assert ((both[CLASSES] > 0) & (both[CLASSES] < 1)).all().all()


def test_a_model_of_other_classes_or_mels_is_refused(soundscape_shard, tmp_path):
    with pytest.raises(ValueError, match="class list"):
        predict_shards([saved_model(tmp_path / "c.pt", 0, classes=["a", "b", "x"])], [soundscape_shard], MEL)
    with pytest.raises(ValueError, match="hash"):
        predict_shards([saved_model(tmp_path / "m.pt", 0, mel_hash="0123")], [soundscape_shard], MEL)


def test_built_validation_windows_are_each_predicted_by_their_folds_model_only(soundscape_shard, tmp_path):
    # two fold models that differ; soundscape 000 holds fold 1's held-out clips, 001 fold 0's
    fold0, fold1 = saved_model(tmp_path / "f0.pt", 0), saved_model(tmp_path / "f1.pt", 1)
    windows = pd.read_parquet(soundscape_shard, columns=["id", "row_id"])
    ids = sorted(windows["id"].unique())
    assert len(ids) == 2
    fold_of = {ids[0]: 1, ids[1]: 0}
    by_fold = predict_shards_by_fold({0: fold0, 1: fold1}, [soundscape_shard], MEL, fold_of, batch_size=3)
    assert list(by_fold.columns) == ["id", "offset_s", "row_id", *CLASSES]  # the format of predict_shards
    assert list(by_fold["row_id"]) == list(windows["row_id"])
    alone = {k: predict_shards([m], [soundscape_shard], MEL) for k, m in ((0, fold0), (1, fold1))}
    for soundscape, fold in fold_of.items():
        rows = (by_fold["id"] == soundscape).to_numpy()
        np.testing.assert_allclose(by_fold.loc[rows, CLASSES], alone[fold].loc[rows, CLASSES], rtol=1e-5, atol=1e-6)
        other = alone[1 - fold].loc[rows, CLASSES].to_numpy()
        assert not np.allclose(by_fold.loc[rows, CLASSES].to_numpy(), other)  # not the other fold, nor the mean


def test_a_window_without_a_fold_or_a_fold_without_a_model_is_refused(soundscape_shard, tmp_path):
    model = saved_model(tmp_path / "f0.pt", 0)
    ids = sorted(pd.read_parquet(soundscape_shard, columns=["id"])["id"].unique())
    with pytest.raises(ValueError, match="no fold"):
        predict_shards_by_fold({0: model}, [soundscape_shard], MEL, {ids[0]: 0})
    with pytest.raises(ValueError, match="no model"):
        predict_shards_by_fold({0: model}, [soundscape_shard], MEL, {ids[0]: 0, ids[1]: 2})
