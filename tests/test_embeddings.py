"""The BirdNET embedding cache: layout, keys equal to the mel rows', one file per shard, model hash refused."""

import numpy as np
import pandas as pd
import pytest

from birdclef import birdnet, embeddings
from birdclef.audio import write_ogg
from birdclef.bundle_predict import combine, window_segments
from birdclef.embeddings import (
    build_embedding_shard,
    read_embeddings,
    write_embedding_shard,
    zero_shot,
)
from birdclef.mel_shards import build_soundscape_shard, build_train_shard
from birdclef.settings import ChunkConfig, EmbeddingConfig, MelConfig

SR = 32_000
CFG = EmbeddingConfig()


def test_a_window_is_three_segments_one_second_apart():
    window = np.arange(5 * birdnet.SAMPLE_RATE, dtype=np.float32)
    segs = window_segments(window, CFG.segment_starts)
    assert segs.shape == (3, birdnet.SEGMENT)
    assert [s[0] for s in segs] == [0, 48_000, 96_000] and segs[2][-1] == 5 * 48_000 - 1
    short = window_segments(window[: 4 * 48_000], CFG.segment_starts)  # past the end: zeros
    assert short[2][96_000 - 1] == 4 * 48_000 - 1 and (short[2][96_000:] == 0).all()


def test_combine_is_the_mean_embedding_and_the_max_logit():
    emb = np.arange(12, dtype=np.float32).reshape(6, 2)  # 2 windows x 3 segments
    logits = np.array([[0, 5], [3, 1], [1, 1], [9, 0], [0, 0], [0, 2]], dtype=np.float32)
    e, g = combine(emb, logits, 2)
    np.testing.assert_allclose(e, [[2, 3], [8, 9]])
    np.testing.assert_allclose(g, [[3, 5], [9, 2]])


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three clips of 2-9 s: two tones and noise, at 32 kHz."""
    root = tmp_path_factory.mktemp("emb")
    rng = np.random.default_rng(0)
    rows = []
    for k, (seconds, freq) in enumerate([(2.0, 3000), (9.0, 5000), (6.0, None)]):
        t = np.arange(int(seconds * SR)) / SR
        audio = 0.3 * np.sin(2 * np.pi * freq * t) if freq else 0.1 * rng.standard_normal(len(t))
        path = root / f"c{k}.ogg"
        write_ogg(path, audio.astype(np.float32), SR)
        rows.append(
            {
                "clip_id": f"c{k}",
                "path": str(path),
                "primary_label": "a" if k < 2 else "b",
                "secondary_labels": [],
                "duration_s": seconds,
                "best_windows": [0.0, 4.0],
                "keep": True,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def shard(clips, tmp_path_factory):
    mel_rows = build_train_shard(clips, ["a", "b"], MelConfig(), ChunkConfig()).to_pandas()
    table, species = build_embedding_shard(
        mel_rows,
        dict(zip(clips["clip_id"], clips["path"], strict=True)),
        {"a": "Turdus merula", "b": ""},
        CFG,
        ChunkConfig(),
    )
    path = tmp_path_factory.mktemp("emb_out") / "shard-000.parquet"
    write_embedding_shard(table, path, species, CFG)
    return mel_rows, path, species


def test_the_cache_has_one_row_per_mel_row_with_its_keys(shard):
    mel_rows, path, species = shard
    emb = read_embeddings([path], CFG)
    assert species == ["Turdus merula"]
    assert emb.embeddings.shape == (len(mel_rows), 1024) and emb.logits.shape == (len(mel_rows), 1)
    pd.testing.assert_frame_equal(emb.rows, mel_rows[["id", "offset_s", "row_id"]].reset_index(drop=True))
    assert np.isfinite(emb.embeddings).all() and (emb.embeddings.std(axis=1) > 0).all()
    # windows of different sounds embed differently
    assert not np.allclose(emb.embeddings[0], emb.embeddings[-1], atol=1e-2)


def test_a_window_embeds_as_the_mean_of_birdnet_on_its_segments(shard, clips):
    mel_rows, path, _ = shard
    emb = read_embeddings([path], CFG)
    row = mel_rows.iloc[-1]
    audio = embeddings.read_audio_48k(clips.set_index("clip_id").loc[row["id"], "path"])
    start = round(float(row["offset_s"]) * birdnet.SAMPLE_RATE)
    window = np.zeros(5 * birdnet.SAMPLE_RATE, np.float32)
    piece = audio[start : start + len(window)]
    window[: len(piece)] = piece
    direct, _ = birdnet.BirdNetEmbedder()(window_segments(window, CFG.segment_starts))
    np.testing.assert_allclose(emb.embeddings[-1], direct.mean(axis=0), atol=2e-3, rtol=2e-3)


def test_another_birdnet_model_or_layout_is_refused(shard, monkeypatch):
    _, path, _ = shard
    with pytest.raises(ValueError, match="segment layout"):
        read_embeddings([path], EmbeddingConfig(segment_starts=(0.0, 2.0)))
    monkeypatch.setattr(birdnet, "model_hash", lambda: "0123456789abcdef")
    with pytest.raises(ValueError, match="BirdNET model of hash"):
        read_embeddings([path], CFG)


def test_aligned_to_reorders_and_refuses_unknown_windows(shard):
    mel_rows, path, _ = shard
    emb = read_embeddings([path])
    flipped = mel_rows.iloc[::-1]
    aligned = emb.aligned_to(flipped)
    np.testing.assert_array_equal(aligned.embeddings, emb.embeddings[::-1])
    with pytest.raises(ValueError, match="no BirdNET embedding"):
        emb.aligned_to(pd.DataFrame({"id": ["nope"], "offset_s": [0.0]}))


def test_zero_shot_is_birdnet_confidence_and_nan_for_unknown_classes(shard):
    _, path, _ = shard
    emb = read_embeddings([path])
    z = zero_shot(emb, ["a", "b"], {"a": "Turdus merula", "b": ""})
    assert np.isnan(z[:, 1]).all() and ((z[:, 0] > 0) & (z[:, 0] < 1)).all()


def test_soundscape_windows_key_like_their_mel_rows(tmp_path):
    # (that one clip lands in the embedding shard named like its mel shard is the workflow's add-a-clip dry-run)
    path = tmp_path / "ss_01.ogg"
    write_ogg(path, (0.05 * np.random.default_rng(1).standard_normal(12 * SR)).astype(np.float32), SR)
    mel_rows = build_soundscape_shard([path], ["a"], MelConfig(), ChunkConfig()).to_pandas()
    table, _ = build_embedding_shard(mel_rows, {"ss_01": str(path)}, {"a": ""}, CFG, ChunkConfig())
    keys = table.select(["id", "offset_s", "row_id"]).to_pandas()
    pd.testing.assert_frame_equal(keys, mel_rows[["id", "offset_s", "row_id"]])
    assert keys["row_id"].tolist() == ["ss_01_5", "ss_01_10"]


def test_a_window_without_its_audio_file_is_a_clear_error():
    rows = pd.DataFrame({"id": ["gone"], "offset_s": [0.0], "row_id": [None]})
    with pytest.raises(ValueError, match="no audio file for 1 ids"):
        build_embedding_shard(rows, {}, {}, CFG, ChunkConfig())
