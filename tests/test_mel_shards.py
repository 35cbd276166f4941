import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from birdclef.audio import write_ogg
from birdclef.bundle_predict import cut, soundscape_starts
from birdclef.dataset import MelShardDataset
from birdclef.manifest import build_manifest
from birdclef.mel import MelFrontend
from birdclef.mel_shards import (
    build_soundscape_shard,
    build_train_shard,
    choose_starts,
    decode_mel,
    load_audio,
    read_meta,
    write_shard,
)
from birdclef.settings import ChunkConfig, MelConfig

SR = 32_000


def test_cut_pads_with_zeros_and_tiles_short_clips():
    audio = np.arange(1, 7 * SR + 1, dtype=np.float32)
    cfg = ChunkConfig(chunk_s=5.0, context_s=1.0)
    x = cut(audio, SR, 0.0, cfg)
    assert len(x) == 7 * SR and (x[:SR] == 0).all() and x[SR] == 1
    x = cut(audio, SR, 4.0, cfg)
    assert x[0] == 3 * SR + 1 and (x[4 * SR :] == 0).all()
    short = np.arange(1, SR + 1, dtype=np.float32)  # 1 s: repeated to fill 5 s
    x = cut(short, SR, 0.0, ChunkConfig())
    assert len(x) == 5 * SR and x[SR] == 1 and x[-1] == SR


def test_choose_starts_best_first_without_much_overlap():
    cfg = ChunkConfig(chunks_per_clip=2, max_overlap=0.5)
    assert choose_starts([10.0, 11.0, 20.0], 30.0, cfg) == [10.0, 20.0]  # 11 overlaps 10 by 80 %
    assert choose_starts([], 12.0, cfg) == [3.5]  # no best window: the middle


def test_soundscape_starts():
    assert soundscape_starts(60.0, ChunkConfig()) == [5.0 * k for k in range(12)]
    assert soundscape_starts(12.4, ChunkConfig()) == [0.0, 5.0]
    assert soundscape_starts(12.6, ChunkConfig()) == [0.0, 5.0, 10.0]


def test_load_audio_resamples_and_downmixes(tmp_path):
    t = np.arange(48_000) / 48_000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    write_ogg(tmp_path / "s.ogg", stereo, 48_000)
    mono = load_audio(tmp_path / "s.ogg", SR)
    assert mono.ndim == 1 and abs(len(mono) - SR) <= 1


@pytest.fixture(scope="module")
def shards(tiny_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("mels")
    clips = build_manifest(tiny_demo, workers=2).clips
    clips = clips.assign(
        keep=True,
        best_windows=[[0.0, 1.0]] * len(clips),
        quality_reason=["kept: class minimum (x)"] + ["kept"] * (len(clips) - 1),
        birdnet_secondary=[[]] * len(clips),
    )
    classes = sorted(pd.read_csv(tiny_demo / "taxonomy.csv")["primary_label"])
    mel, cfg = MelConfig(), ChunkConfig(chunks_per_clip=2)
    write_shard(build_train_shard(clips, classes, mel, cfg, threads=2), out / "train.parquet", classes, mel, cfg)
    soundscapes = sorted((tiny_demo / "train_soundscapes").glob("*.ogg"))
    write_shard(build_soundscape_shard(soundscapes, classes, mel, cfg, 2), out / "ss.parquet", classes, mel, cfg)
    return out, clips, classes, soundscapes


def test_train_shard_rows_labels_and_metadata(shards):
    out, clips, classes, _ = shards
    table = pq.read_table(out / "train.parquet").to_pandas()
    assert len(table) == len(clips)  # best windows 0 s and 1 s overlap by 80 %: one chunk each
    first = clips.sort_values("clip_id").iloc[0]
    rows = table[table["id"] == first["clip_id"]]
    assert (rows["primary"] == classes.index(first["primary_label"])).all()
    assert rows["weight"].iloc[0] == pytest.approx(0.5 if first.name == 0 else 1.0)
    meta = read_meta(out / "train.parquet", MelConfig())
    assert meta.classes == classes and meta.mel_shape == (128, 321)
    assert pq.ParquetFile(out / "train.parquet").metadata.row_group(0).num_rows <= 32
    assert pq.ParquetFile(out / "train.parquet").metadata.row_group(0).column(6).compression == "ZSTD"


def test_stored_mel_is_the_frontend_on_the_cut_window(shards):
    out, clips, _, soundscapes = shards
    table = pq.read_table(out / "ss.parquet").to_pandas()
    row = table.iloc[3]
    audio = load_audio(soundscapes[0], SR)
    assert row["id"] == soundscapes[0].stem and row["row_id"] == f"{row['id']}_{round(row['offset_s'] + 5)}"
    expected = MelFrontend(MelConfig()).numpy16(cut(audio, SR, row["offset_s"], ChunkConfig()))[0]
    np.testing.assert_array_equal(decode_mel(row["mel"], (128, 321)), expected)
    assert len(table) == sum(len(soundscape_starts(len(load_audio(p, SR)) / SR, ChunkConfig())) for p in soundscapes)


def test_a_reader_refuses_other_mel_parameters(shards):
    out = shards[0]
    with pytest.raises(ValueError, match="rebuild the mel shards"):
        read_meta(out / "train.parquet", MelConfig(hop_length=512))
    with pytest.raises(ValueError, match="rebuild the mel shards"):
        MelShardDataset([out / "train.parquet"], MelConfig(n_mels=64))


def test_dataset_serves_mel_target_weight_by_index(shards):
    out, clips, classes, _ = shards
    ds = MelShardDataset([out / "train.parquet", out / "ss.parquet"], MelConfig(), secondary_target=0.3)
    table = pq.read_table(out / "train.parquet").to_pandas()
    k = int(np.flatnonzero(table["secondary"].map(len) > 0)[0]) if (table["secondary"].map(len) > 0).any() else 0
    mel, target, weight = ds[k]
    assert mel.shape == (1, 128, 321) and mel.dtype == torch.float32
    np.testing.assert_array_equal(mel[0].numpy(), decode_mel(table["mel"].iloc[k], (128, 321)).astype(np.float32))
    assert target[table["primary"].iloc[k]] == 1.0
    for s in table["secondary"].iloc[k]:
        assert target[s] == pytest.approx(0.3)
    assert float(weight) == table["weight"].iloc[k]
    _, unlabelled, _ = ds[len(table)]  # the first soundscape window
    assert unlabelled.sum() == 0
    # random access in any order gives the same as in order
    order = np.random.default_rng(0).permutation(len(ds))
    for i in order[:20]:
        np.testing.assert_array_equal(ds[int(i)][0].numpy(), ds.mel(int(i)).astype(np.float32)[None])


def test_dataset_works_with_worker_processes(shards):
    out = shards[0]
    ds = MelShardDataset([out / "train.parquet"], MelConfig())
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    mels = torch.cat([m for m, _, _ in loader])
    assert len(mels) == len(ds)
    torch.testing.assert_close(mels[-1], ds[len(ds) - 1][0])
