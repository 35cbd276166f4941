import numpy as np
import pandas as pd
import pytest

from birdclef.dataset import MelShardDataset
from birdclef.export import labelled_windows
from birdclef.layout import default_members, parse_member
from birdclef.members import oof_rows, validation_rows

from conftest import SHARD_CLASSES as CLASSES
from conftest import SHARD_MEL as MEL


def test_members_are_stage_slash_name():
    assert parse_member("student/regnety_sed") == ("student", "regnety_sed")
    for bad in ("regnety_sed", "teachers/x", "student/"):
        with pytest.raises(ValueError, match="teacher|student"):
            parse_member(bad)
    assert default_members(["a"], ["b", "c"]) == ["teacher/a", "student/b", "student/c"]


def test_validation_rows_follow_the_solution_not_the_prediction_order():
    solution = pd.DataFrame({"row_id": ["s1_5", "s1_10", "s2_5"], "x": [1, 0, 0], "y": [0, 0, 1]})
    pred = pd.DataFrame({"row_id": ["s2_5", "s1_5", "s1_10", "extra_5"], "y": [0.9, 0.1, 0.2, 0.5], "x": 0.3})
    probs, truth, groups, classes = validation_rows({"teacher/m": pred}, solution)
    assert classes == ["x", "y"]
    np.testing.assert_array_equal(probs["teacher/m"][:, 1], [0.1, 0.2, 0.9])
    np.testing.assert_array_equal(truth, [[1, 0], [0, 0], [0, 1]])
    assert groups.tolist() == ["s1", "s1", "s2"]
    with pytest.raises(ValueError, match="student/n: no prediction for 1"):
        validation_rows({"student/n": pred.iloc[1:]}, solution)


def test_oof_rows_line_members_up_by_chunk_and_refuse_other_chunks():
    a = pd.DataFrame({"id": ["c2", "c1", "c1"], "offset_s": [0.0, 5.0, 0.0], "primary_label": ["y", "x", "x"]})
    a[["x", "y"]] = [[0.1, 0.9], [0.8, 0.2], [0.7, 0.3]]
    b = a.iloc[::-1].copy()
    b[["x", "y"]] = 1 - b[["x", "y"]]
    probs, truth, groups = oof_rows({"teacher/a": a, "student/b": b}, ["x", "y"])
    assert groups.tolist() == ["c1", "c1", "c2"]
    np.testing.assert_array_equal(truth, [[1, 0], [1, 0], [0, 1]])
    np.testing.assert_allclose(probs["teacher/a"] + probs["student/b"], 1.0)
    np.testing.assert_allclose(probs["teacher/a"][:, 0], [0.7, 0.8, 0.1])
    with pytest.raises(ValueError, match="student/b"):
        oof_rows({"teacher/a": a, "student/b": b.iloc[1:]}, ["x", "y"])


def test_labelled_windows_take_the_solution_rows_or_the_primary_labels(soundscape_shard):
    ds = MelShardDataset([soundscape_shard], MEL)
    chosen = ds.rows["row_id"].iloc[[3, 1]].tolist()
    solution = pd.DataFrame({"row_id": chosen, "a": [1, 0], "b": [0, 1], "c": [0, 0]})
    windows, labels = labelled_windows([soundscape_shard], MEL, solution)
    assert windows.shape == (2, 1, *ds.mel_shape) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows[0, 0], ds.mel(1).astype(np.float32))  # shard order, labels matched
    np.testing.assert_array_equal(labels, [[0, 1, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="no labelled windows"):
        labelled_windows([soundscape_shard], MEL)  # soundscape windows have no primary label
    assert ds.classes == CLASSES
