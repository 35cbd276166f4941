import numpy as np
import pandas as pd
import pytest

from birdclef.predict import predict_shards

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
