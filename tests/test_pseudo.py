import numpy as np
import pandas as pd
import pytest

from birdclef.predict import predict_shards
from birdclef.pseudo import birdnet_window_probs, blend, keep_windows, pseudo_labels, sharpen

from conftest import SHARD_MEL, saved_model

CLASSES = ["song", "call", "other", "unknown"]
SPECIES = {"song": "Turdus merula", "call": "Turdus merula", "other": "Parus major", "unknown": ""}


def windows(n=4, ids=("s1",)):
    return pd.DataFrame([{"row_id": f"{i}_{5 * (k + 1)}", "id": i, "offset_s": 5.0 * k} for i in ids for k in range(n)])


def test_birdnet_confidences_land_on_every_overlapping_window_and_every_class_of_the_species():
    det = pd.DataFrame(
        {
            "clip_id": ["s1", "s1", "s1", "s2"],
            "start": [3.0, 6.0, 12.0, 0.0],
            "end": [6.0, 9.0, 15.0, 3.0],
            "scientific_name": ["Turdus merula", "Turdus merula", "Parus major", "Parus major"],
            "confidence": [0.4, 0.9, 0.7, 0.99],
        }
    )
    out = birdnet_window_probs(det, windows(ids=("s1", "s2")), SPECIES, CLASSES, chunk_s=5.0).set_index("row_id")
    # 3-6 s overlaps windows 0-5 and 5-10; 6-9 s only 5-10 (max 0.9 there)
    assert out.loc["s1_5", "song"] == out.loc["s1_5", "call"] == 0.4
    assert out.loc["s1_10", "song"] == out.loc["s1_10", "call"] == 0.9
    assert out.loc["s1_15", "other"] == 0.7 and out.loc["s1_20", "other"] == 0.0
    assert out.loc["s2_5", "other"] == 0.99 and out.loc["s2_10", "other"] == 0.0  # no leak across files
    assert out["unknown"].isna().all()  # BirdNET has no opinion on a class it does not know


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
    first = windows.iloc[0]
    det = pd.DataFrame(
        {"clip_id": [first["id"]], "start": [0.0], "end": [3.0], "scientific_name": ["Aus aus"], "confidence": [0.9]}
    )
    species = {"a": "Aus aus", "b": "", "c": "Cus cus"}
    labels = pseudo_labels(
        {"a": a, "b": b}, {"b": 3.0}, [soundscape_shard], SHARD_MEL, (det, species, 4.0), min_max_prob=0.5
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
