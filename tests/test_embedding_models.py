"""Models that use BirdNET embeddings: the birdnet_head kind, and embedding distillation into a CNN.

The embeddings here are synthetic (one direction per class plus noise), written as real
embedding shards, so that training is tested without running BirdNET.
"""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from birdclef.embeddings import SCHEMA, write_embedding_shard
from birdclef.kinds import load_model
from birdclef.mel_shards import build_soundscape_shard, write_shard
from birdclef.predict import predict_shards
from birdclef.settings import EmbeddingConfig, ModelConfig, TrainConfig
from birdclef.train import EmbeddingInputs, train_fold

from conftest import build_train_cache

FAST = {"epochs": 3, "batch_size": 4, "lr": 3e-3, "warmup_epochs": 0.5, "seed": 3}


def fake_embeddings(rows: pd.DataFrame, n_classes: int, seed: int) -> np.ndarray:
    """Non-negative 1024-d vectors: a direction per primary class (none for unlabelled rows) plus noise."""
    rng = np.random.default_rng(seed)
    directions = np.random.default_rng(0).random((n_classes, 1024)).astype(np.float32)
    emb = 0.3 * rng.random((len(rows), 1024)).astype(np.float32)
    labelled = rows["primary"].to_numpy() >= 0
    emb[labelled] += directions[rows["primary"].to_numpy()[labelled]]
    return emb


def write_fake_embedding_shard(mel_shard, path, n_classes: int, seed: int) -> np.ndarray:
    rows = pd.read_parquet(mel_shard, columns=["id", "offset_s", "row_id", "primary"])
    emb = fake_embeddings(rows, n_classes, seed)
    table = pa.Table.from_pydict(
        {
            "id": rows["id"].tolist(),
            "offset_s": rows["offset_s"].tolist(),
            "row_id": [None if pd.isna(r) else r for r in rows["row_id"]],
            "embedding": [e.astype(np.float16).tobytes() for e in emb],
            "logits": [b""] * len(rows),
        },
        schema=SCHEMA,
    )
    write_embedding_shard(table, path, [], EmbeddingConfig())
    return emb


@pytest.fixture(scope="module")
def cache(tiny_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("emb_cache")
    built = build_train_cache(tiny_demo, out)
    classes, mel, chunks, folds = built.classes, built.mel, built.chunks, built.folds
    soundscapes = sorted((tiny_demo / "train_soundscapes").glob("*.ogg"))
    write_shard(build_soundscape_shard(soundscapes, classes, mel, chunks), out / "ss.parquet", classes, mel, chunks)
    write_fake_embedding_shard(out / "s.parquet", out / "e.parquet", len(classes), 1)
    write_fake_embedding_shard(out / "ss.parquet", out / "ess.parquet", len(classes), 2)
    return out, folds, mel, classes


def test_a_birdnet_head_trains_per_fold_with_oof_and_predicts_from_embeddings(cache, tmp_path):
    out, folds, mel, classes = cache
    head = ModelConfig(kind="birdnet_head", head="mlp", hidden=64, dropout=0.0)
    cfg = TrainConfig.from_dict({**FAST, "epochs": 8, "lr": 1e-2})
    inputs = EmbeddingInputs(train=[out / "e.parquet"])
    metrics = train_fold([out / "s.parquet"], folds, 0, head, cfg, mel, tmp_path / "f0", embeddings=inputs)
    assert metrics["kind"] == "birdnet_head"
    # the synthetic embeddings carry the class: a head learns it out of fold
    assert metrics["val_macro_roc_auc"] > 0.9
    history = pd.read_csv(tmp_path / "f0" / "history.csv")
    assert len(history) == 8 and history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    oof = pd.read_parquet(tmp_path / "f0" / "oof.parquet")
    assert set(oof["id"]) <= set(folds.loc[folds["fold"] == 0, "clip_id"]) and len(oof) > 0
    model, payload = load_model(tmp_path / "f0" / "model.pt")
    assert payload["model_config"]["kind"] == "birdnet_head"
    with pytest.raises(ValueError, match="embedding shards"):
        predict_shards([tmp_path / "f0" / "model.pt"], [out / "s.parquet"], mel)
    pred = predict_shards([tmp_path / "f0" / "model.pt"], [out / "s.parquet"], mel, embedding_paths=[out / "e.parquet"])
    again = pred.set_index(["id", "offset_s"]).loc[list(zip(oof["id"], oof["offset_s"], strict=True)), classes]
    np.testing.assert_allclose(again.to_numpy(), oof[classes].to_numpy(), atol=1e-5)


def test_embedding_distillation_moves_the_projection_toward_birdnet_and_is_not_saved(cache, tmp_path):
    out, folds, mel, _ = cache
    cnn = ModelConfig(backbone="mobilenetv3_small_050", head="conv1x1")
    cfg = TrainConfig.from_dict({**FAST, "epochs": 4, "embedding_distill": {"weight": 1.0, "soundscape_share": 0.3}})
    inputs = EmbeddingInputs(
        train=[out / "e.parquet"], soundscapes=[out / "ess.parquet"], soundscape_mels=[out / "ss.parquet"]
    )
    metrics = train_fold([out / "s.parquet"], folds, 0, cnn, cfg, mel, tmp_path / "d", embeddings=inputs)
    history = pd.read_csv(tmp_path / "d" / "history.csv")
    loss = history["train_embedding_loss"].to_numpy()
    assert np.isfinite(loss).all() and loss[-1] < loss[0]  # the projection learns BirdNET's directions
    assert metrics["embedding_distill_weight"] == 1.0
    payload = torch.load(tmp_path / "d" / "model.pt", weights_only=True)
    assert not any("projection" in key for key in payload["state_dict"])  # training-only: absent from model.pt
    model, _ = load_model(tmp_path / "d" / "model.pt")  # loads strictly into the plain CNN
    assert not hasattr(model, "projection")
    # without the embeddings the option cannot run
    with pytest.raises(ValueError, match="embedding_distill needs"):
        train_fold([out / "s.parquet"], folds, 0, cnn, cfg, mel, tmp_path / "x")
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["kind"] == "cnn"
