import numpy as np
import pandas as pd
import pytest

from birdclef.embeddings import Embeddings
from birdclef.folds import soundscape_fold
from birdclef.predict import predict_shards
from birdclef.pseudo import birdnet_window_probs, blend, keep_windows, pseudo_labels, sharpen

from conftest import SHARD_MEL, saved_model

CLASSES = ["song", "call", "other", "unknown"]
SPECIES = {"song": "Turdus merula", "call": "Turdus merula", "other": "Parus major", "unknown": ""}


def windows(n=4, ids=("s1",)):
    return pd.DataFrame([{"row_id": f"{i}_{5 * (k + 1)}", "id": i, "offset_s": 5.0 * k} for i in ids for k in range(n)])


def cached(windows: pd.DataFrame, logits: dict[str, list[float]]) -> Embeddings:
    """An embedding cache of ``windows`` whose logits per BirdNET species are given (embeddings unused here)."""
    species = sorted(logits)
    return Embeddings(
        windows[["id", "offset_s", "row_id"]].reset_index(drop=True),
        np.zeros((len(windows), 1024), np.float32),
        np.array([logits[s] for s in species], np.float32).T,
        species,
    )


def test_birdnet_confidences_come_from_the_cached_logits_for_every_class_of_the_species():
    w = windows(ids=("s1", "s2"))  # 8 windows
    logits = {"Turdus merula": [0.0, 2.0, -3.0, 0.0, 1.0, 0.0, 0.0, 0.0], "Parus major": [-1.0] * 8}
    emb = cached(w.iloc[::-1], logits)  # stored in another order: aligned by (id, offset_s)
    out = birdnet_window_probs(emb, w, SPECIES, CLASSES).set_index("row_id")
    sigmoid = 1 / (1 + np.exp(-np.array(logits["Turdus merula"][::-1])))
    np.testing.assert_allclose(out["song"], sigmoid, rtol=1e-6)
    np.testing.assert_allclose(out["call"], out["song"])  # two classes of one species: the same confidence
    assert out["other"].tolist() == pytest.approx([1 / (1 + np.exp(1.0))] * 8)
    assert out["unknown"].isna().all()  # BirdNET has no opinion on a class it does not know
    quieter = birdnet_window_probs(emb, w, SPECIES, CLASSES, sensitivity=0.5).set_index(
        "row_id"
    )  # birdnetlib: slope 1.5
    assert quieter.loc["s2_15", "song"] > out.loc["s2_15", "song"] > 0.5  # logit 2.0 there
    with pytest.raises(ValueError, match="no BirdNET embedding"):
        birdnet_window_probs(cached(w.iloc[:3], {"Turdus merula": [0.0] * 3}), w, SPECIES, CLASSES)


def test_blend_weights_sources_per_class_and_skips_missing_opinions():
    w = windows(2)[["row_id"]]
    teacher = w.assign(song=0.2, call=0.4, other=0.6, unknown=0.8)
    birdnet = w.assign(song=0.8, call=0.8, other=0.0, unknown=np.nan)
    out = blend([(teacher, 1.0), (birdnet, 3.0)], CLASSES)
    assert out["song"].tolist() == pytest.approx([0.65, 0.65])  # (0.2 + 3 * 0.8) / 4
    assert out["unknown"].tolist() == pytest.approx([0.8, 0.8])  # the teacher alone
    with pytest.raises(ValueError, match="same windows"):
        blend([(teacher, 1.0), (birdnet.iloc[::-1], 1.0)], CLASSES)


def test_sharpen_and_keep():
    p = np.array([[0.9, 0.3], [0.2, 0.1]])
    assert sharpen(p, 2.0) == pytest.approx(np.array([[0.81, 0.09], [0.04, 0.01]]))
    assert keep_windows(p, 0.5).tolist() == [True, False]


def test_pseudo_labels_blend_teachers_and_birdnet_over_every_window(soundscape_shard, tmp_path):
    a = [saved_model(tmp_path / f"a{k}.pt", k) for k in range(2)]
    b = [saved_model(tmp_path / "b0.pt", 5)]
    windows = pd.read_parquet(soundscape_shard, columns=["id", "offset_s", "row_id"])
    logit = np.log(0.9 / 0.1)  # BirdNET's confidence 0.9 for Aus aus in the first window, about 0 elsewhere
    emb = cached(windows, {"Aus aus": [logit] + [-15.0] * (len(windows) - 1), "Cus cus": [-15.0] * len(windows)})
    species = {"a": "Aus aus", "b": "", "c": "Cus cus"}
    labels = pseudo_labels(
        {"a": a, "b": b}, {"b": 3.0}, [soundscape_shard], SHARD_MEL, (emb, species, 4.0), min_max_prob=0.5
    )
    assert list(labels["row_id"]) == list(windows["row_id"])
    assert labels["teachers"].iat[0] == "a:1,b:3,birdnet:4"
    pa = predict_shards(a, [soundscape_shard], SHARD_MEL)
    pb = predict_shards(b, [soundscape_shard], SHARD_MEL)
    expected_b = (pa["b"] + 3 * pb["b"]) / 4  # BirdNET does not know class b
    np.testing.assert_allclose(labels["b"], expected_b, rtol=1e-5)
    expected_a0 = (pa["a"].iat[0] + 3 * pb["a"].iat[0] + 4 * 0.9) / 8
    assert labels["a"].iat[0] == pytest.approx(expected_a0, rel=1e-5)
    assert labels["keep"].tolist() == (labels[["a", "b", "c"]].max(axis=1) >= 0.5).tolist()


def test_a_teacher_that_trained_on_soundscapes_labels_each_window_only_with_the_fold_that_held_it_out(
    soundscape_shard, tmp_path
):
    models = []
    for k in range(2):  # a student's two folds: fold k trained on every soundscape fold but k
        (tmp_path / f"models/student/s/fold{k}").mkdir(parents=True)
        models.append(saved_model(tmp_path / f"models/student/s/fold{k}/model.pt", 10 + k))
    windows = pd.read_parquet(soundscape_shard, columns=["id"])
    folds = soundscape_fold(windows["id"], 2)
    assert set(folds) == {0, 1}
    oof = pseudo_labels(
        {"s": models}, {}, [soundscape_shard], SHARD_MEL, min_max_prob=0.5, n_folds=2, out_of_fold={"s"}
    )
    assert oof["fold"].tolist() == folds.tolist()
    by_fold = [predict_shards([m], [soundscape_shard], SHARD_MEL) for m in models]
    classes = ["a", "b", "c"]
    for k in (0, 1):
        rows = folds == k
        np.testing.assert_allclose(oof.loc[rows, classes], by_fold[k].loc[rows, classes], rtol=1e-6)
        assert not np.allclose(oof.loc[rows, classes], by_fold[1 - k].loc[rows, classes])  # never the other fold
    mean = pseudo_labels({"s": models}, {}, [soundscape_shard], SHARD_MEL, n_folds=2)  # a teacher that never saw them
    np.testing.assert_allclose(mean[classes], predict_shards(models, [soundscape_shard], SHARD_MEL)[classes], rtol=1e-6)
