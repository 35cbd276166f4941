import shutil

import numpy as np
import pandas as pd
import pytest

from birdclef.dataset import MelShardDataset
from birdclef.infer import Member, assemble_submission, birdnet_embed, class_prior, file_row_ids, predict_files

from conftest import SHARD_CHUNKS as CHUNKS
from conftest import SHARD_MEL as MEL

CLASSES = ["a", "b", "c"]


class Recorder:
    """A member that predicts each window's mean level per class, and keeps what it was given."""

    def __init__(self, scale: float = 1.0) -> None:
        self.seen: list[np.ndarray] = []
        self.scale = scale

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        self.seen.append(mels)
        level = mels.mean(axis=(1, 2, 3))[:, None] * self.scale
        return np.repeat(level, len(CLASSES), axis=1)


def test_windows_get_the_training_mels_and_kaggle_row_ids(tiny_demo, soundscape_shard):
    """Inference computes exactly the mels the cache holds for the same soundscapes (the one frontend)."""
    paths = sorted((tiny_demo / "train_soundscapes").glob("*.ogg"))
    a, b = Recorder(), Recorder(2.0)
    ids, probs, rejected = predict_files(
        paths, [Member("mels", a), Member("mels", b)], MEL, CHUNKS, threads=2, files_per_step=1
    )
    ds = MelShardDataset([soundscape_shard], MEL)
    assert ids["row_id"].tolist() == ds.rows["row_id"].tolist()
    assert rejected == []
    mels = np.concatenate(a.seen)
    assert mels.shape == (len(ds), 1, *ds.mel_shape)
    cached = np.stack([ds.mel(i) for i in range(len(ds))]).astype(np.float32)
    np.testing.assert_allclose(mels[:, 0], cached, atol=2e-3)  # the cache stores float16
    assert [p.shape for p in probs] == [(len(ds), 3)] * 2
    np.testing.assert_allclose(probs[1], 2 * probs[0], rtol=1e-6)


def test_a_corrupt_file_is_set_aside_with_its_reason(tiny_demo, tmp_path):
    good = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))[0]
    shutil.copy(good, tmp_path / "good.ogg")
    (tmp_path / "broken.ogg").write_bytes(b"OggS" + bytes(500))
    ids, probs, rejected = predict_files(sorted(tmp_path.glob("*.ogg")), [Member("mels", Recorder())], MEL, CHUNKS)
    assert set(ids["id"]) == {"good"}
    assert [r["file"] for r in rejected] == ["broken.ogg"]
    assert "cannot decode" in rejected[0]["reason"]
    assert len(probs[0]) == len(ids)
    # an unreadable header: the file's rows are guessed from the fallback length
    assert file_row_ids(tmp_path / "broken.ogg", CHUNKS, 15) == ["broken_5", "broken_10", "broken_15"]
    assert file_row_ids(tmp_path / "good.ogg", CHUNKS, 15)[-1] == ids["row_id"].iloc[-1]


def test_the_submission_follows_the_sample_and_fills_rows_without_predictions():
    sample = pd.DataFrame({"row_id": ["s1_5", "s1_10", "s2_5"], "c": 0.0, "a": 0.0, "b": 0.0})
    predicted = pd.DataFrame({"row_id": ["s1_10", "s1_5", "s3_5"], "a": [0.1, 0.2, 0.3], "b": 0.5, "c": 0.9})
    prior = pd.Series({"a": 0.5, "b": 0.3, "c": 0.2})
    sub, filled = assemble_submission(predicted, sample, prior, {"s4": ["s4_5", "s4_10"]})
    assert list(sub.columns) == ["row_id", "c", "a", "b"]  # the sample's column order
    assert sub["row_id"].tolist() == ["s1_5", "s1_10", "s2_5", "s3_5", "s4_5", "s4_10"]
    assert sub.loc[0, "a"] == 0.2 and sub.loc[1, "a"] == 0.1  # matched by row id, not by position
    np.testing.assert_allclose(sub.loc[sub["row_id"] == "s2_5", ["a", "b", "c"]].to_numpy(), [[0.5, 0.3, 0.2]])
    assert dict(zip(filled["file"], filled["rows_filled"], strict=True)) == {"s2": 1, "s4": 2}
    assert not sub.isna().any().any()


def test_the_submission_refuses_unknown_classes_and_twice_predicted_rows():
    sample = pd.DataFrame({"row_id": ["s_5"], "a": 0.0, "zz": 0.0})
    prior = pd.Series({"a": 1.0})
    with pytest.raises(ValueError, match="zz"):
        assemble_submission(pd.DataFrame({"row_id": ["s_5"], "a": [0.1]}), sample, prior)
    with pytest.raises(ValueError, match="share a row id"):
        assemble_submission(pd.DataFrame({"row_id": ["s_5", "s_5"], "a": [0.1, 0.2]}), sample[["row_id", "a"]], prior)


def test_class_prior_is_a_distribution_without_zeros():
    prior = class_prior(["a", "a", "b"], CLASSES)
    assert prior.index.tolist() == CLASSES
    assert prior.sum() == pytest.approx(1.0)
    assert prior["a"] > prior["b"] > prior["c"] > 0


def test_embedding_members_get_the_cached_birdnet_embeddings_from_the_same_decode(tiny_demo, soundscape_shard):
    """A birdnet_head member at inference sees what the embedding cache holds for the same windows."""
    from birdclef.embeddings import build_embedding_shard
    from birdclef.settings import EmbeddingConfig

    paths = sorted((tiny_demo / "train_soundscapes").glob("*.ogg"))
    seen: list[np.ndarray] = []

    def head(emb: np.ndarray) -> np.ndarray:
        seen.append(emb)
        return np.zeros((len(emb), len(CLASSES)), np.float32)

    cfg = EmbeddingConfig()
    members = [Member("mels", Recorder()), Member("embeddings", head)]
    with pytest.raises(ValueError, match="no embed function"):
        predict_files(paths, members, MEL, CHUNKS)
    ids, probs, _ = predict_files(paths, members, MEL, CHUNKS, threads=2, embed=birdnet_embed(cfg, CHUNKS, 2))
    rows = MelShardDataset([soundscape_shard], MEL).rows
    table, _ = build_embedding_shard(rows, {p.stem: str(p) for p in paths}, {}, cfg, CHUNKS)
    cached = np.stack([np.frombuffer(b, np.float16) for b in table.column("embedding").to_pylist()])
    got = np.concatenate(seen)
    assert got.shape == (len(ids), 1024) and len(probs[1]) == len(ids)
    np.testing.assert_allclose(got, cached.astype(np.float32), atol=5e-3, rtol=5e-3)  # the cache stores float16
