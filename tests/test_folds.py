import pandas as pd
import pytest

from birdclef.folds import assign_folds, fold_groups


def clips(n_labels: int = 4, per_label: int = 10) -> pd.DataFrame:
    rows = []
    for k in range(n_labels):
        for i in range(per_label):
            cid = f"l{k}/c{i}"
            rows.append({"clip_id": cid, "primary_label": f"l{k}", "dup_group": cid, "author": f"a{k}_{i}"})
    return pd.DataFrame(rows)


def test_copies_and_same_author_share_a_fold():
    c = clips()
    c.loc[c["clip_id"] == "l0/c1", "dup_group"] = "l0/c0"  # a copy of l0/c0 ...
    c.loc[c["clip_id"] == "l0/c1", "author"] = "a2_5"  # ... uploaded by the author of l2/c5
    folds = assign_folds(c, n_folds=5, seed=1).set_index("clip_id")["fold"]
    assert folds["l0/c0"] == folds["l0/c1"] == folds["l2/c5"]
    assert sorted(folds.unique()) == [0, 1, 2, 3, 4]


def test_folds_are_stratified_and_repeatable():
    c = clips()
    a, b = assign_folds(c, 5, seed=3), assign_folds(c.sample(frac=1, random_state=0), 5, seed=3)
    pd.testing.assert_frame_equal(a, b)
    per = a.merge(c, on="clip_id").groupby(["primary_label", "fold"]).size().unstack()
    assert (per == 2).all().all()  # 10 clips of each label, 2 per fold


def test_a_collective_author_is_ignored():
    c = clips().assign(author="nips4b")
    assert len(set(fold_groups(c, 5))) == len(c)
    assert len(set(fold_groups(c, 5, by_author=False))) == len(c)
    with pytest.raises(ValueError, match="n_folds"):
        assign_folds(c, 1)
