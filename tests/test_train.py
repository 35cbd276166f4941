import json
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from birdclef.dataset import MelShardDataset
from birdclef.folds import soundscape_fold
from birdclef.kinds import load_model
from birdclef.mel_shards import build_soundscape_shard, write_shard
from birdclef.settings import ChunkConfig, DistillConfig, ModelConfig, SoundscapeMixupConfig, TrainConfig
from birdclef.train import StudentData, train_fold

from conftest import REPO, build_train_cache

FAST = {"epochs": 2, "batch_size": 4, "lr": 3e-3, "warmup_epochs": 0.5, "seed": 3}
MODEL = ModelConfig(backbone="efficientnet_b0", head="sed")


@pytest.fixture(scope="module")
def cache(tiny_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("train_cache")
    built = build_train_cache(tiny_demo, out)
    built.folds.to_csv(out / "folds.csv", index=False)
    built.clips[["clip_id", "primary_label"]].to_parquet(out / "clips.parquet")
    return out, built.folds, built.mel


def test_train_fold_writes_the_four_files(cache, tmp_path):
    out, folds, mel = cache
    metrics = train_fold([out / "s.parquet"], folds, 0, MODEL, TrainConfig.from_dict(FAST), mel, tmp_path / "f0")
    for name in ("model.pt", "oof.parquet", "history.csv", "metrics.json"):
        assert (tmp_path / "f0" / name).is_file()
    history = pd.read_csv(tmp_path / "f0" / "history.csv")
    assert list(history["epoch"]) == [1, 2] and history["train_loss"].notna().all()
    assert json.loads((tmp_path / "f0" / "metrics.json").read_text())["best_epoch"] == metrics["best_epoch"]
    oof = pd.read_parquet(tmp_path / "f0" / "oof.parquet")
    held_out = set(folds.loc[folds["fold"] == 0, "clip_id"])
    assert set(oof["id"]) <= held_out and len(oof) > 0
    truth = pd.read_parquet(out / "clips.parquet").set_index("clip_id")["primary_label"]
    assert (oof["primary_label"] == oof["id"].map(truth)).all()
    model, payload = load_model(tmp_path / "f0" / "model.pt")
    assert payload["mel_hash"] == mel.hash and payload["epoch"] == metrics["best_epoch"]


def test_a_cpu_run_repeats_exactly(cache, tmp_path):
    out, folds, mel = cache
    cfg = TrainConfig.from_dict({**FAST, "epochs": 1})
    for name in ("a", "b"):
        train_fold([out / "s.parquet"], folds, 1, MODEL, cfg, mel, tmp_path / name)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


SCRIPT = """
import sys, pandas as pd
sys.path.insert(0, {pkg!r})
from birdclef.settings import MelConfig
from birdclef.settings import ModelConfig
from birdclef.train import StudentData, train_fold
from birdclef.settings import TrainConfig
train_fold([{shard!r}], pd.read_csv({folds!r}), 0, ModelConfig(backbone="efficientnet_b0", head="sed"),
           TrainConfig.from_dict({cfg!r}), MelConfig(n_mels=64), {out!r})
"""


@pytest.mark.slow
def test_a_killed_run_resumes_and_ends_as_an_uninterrupted_one(cache, tmp_path):
    out, folds, mel = cache
    cfg = {**FAST, "epochs": 3}
    train_fold([out / "s.parquet"], folds, 0, MODEL, TrainConfig.from_dict(cfg), mel, tmp_path / "whole")

    script = SCRIPT.format(
        pkg=str(REPO / "workflow_scripts"),
        shard=str(out / "s.parquet"),
        folds=str(out / "folds.csv"),
        cfg=cfg,
        out=str(tmp_path / "killed"),
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    assert state["epoch"] < 2, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "model.pt").exists()  # outputs appear only when the run is done

    train_fold([out / "s.parquet"], folds, 0, MODEL, TrainConfig.from_dict(cfg), mel, tmp_path / "killed")
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    assert a["history"][-1]["epoch"] == b["history"][-1]["epoch"] == 3
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "whole" / "oof.parquet"), pd.read_parquet(tmp_path / "killed" / "oof.parquet")
    )


def test_a_student_trains_on_soft_targets_and_pseudo_windows(cache, tiny_demo, tmp_path, caplog):
    out, folds, mel = cache
    shard, chunks = out / "s.parquet", ChunkConfig(chunk_s=2.0, chunks_per_clip=2, max_overlap=0.0)
    classes = MelShardDataset([shard], mel).classes
    soundscapes = sorted((tiny_demo / "train_soundscapes").glob("*.ogg"))
    write_shard(
        build_soundscape_shard(soundscapes, classes, mel, chunks), tmp_path / "ss.parquet", classes, mel, chunks
    )
    soft = pd.read_parquet(shard, columns=["id", "offset_s"]).assign(**{c: 0.3 for c in classes})
    labels = pd.read_parquet(tmp_path / "ss.parquet", columns=["row_id"]).assign(keep=True, **{c: 0.1 for c in classes})
    student = StudentData(DistillConfig(distill_weight=0.5, pseudo_share=0.3), soft, [tmp_path / "ss.parquet"], labels)
    cfg = TrainConfig.from_dict(FAST)
    with caplog.at_level("INFO"):
        metrics = train_fold([shard], folds, 0, MODEL, cfg, mel, tmp_path / "s", student=student)
    assert "kept, " in caplog.text and "soundscape MixUp" not in caplog.text
    assert (tmp_path / "s" / "model.pt").is_file() and metrics["best_epoch"] in (1, 2)
    n_clips = folds["fold"].ne(0).sum()
    assert metrics["n_train_clips"] == n_clips
    outside = (soundscape_fold(pd.read_parquet(tmp_path / "ss.parquet", columns=["id"])["id"], 2) != 0).sum()
    assert f"{outside} of {len(labels)} soundscape windows outside soundscape fold 0" in caplog.text
    mixup = DistillConfig(distill_weight=0.5, pseudo_share=0.0, soundscape_mixup=SoundscapeMixupConfig(p=1.0))
    caplog.clear()
    with caplog.at_level("INFO"):
        train_fold(
            [shard],
            folds,
            0,
            MODEL,
            cfg,
            mel,
            tmp_path / "m",
            student=StudentData(mixup, soft, [tmp_path / "ss.parquet"], labels),
        )
    assert f"over {outside} windows" in caplog.text and "0 drawn per epoch" in caplog.text
    assert "soundscape MixUp replaces in-batch mixup" in caplog.text
    history = pd.read_csv(tmp_path / "m" / "history.csv")
    assert np.isfinite(history["train_loss"]).all()
    # new pseudo-labels (an upstream rerun) after a killed job: its last.pt is not resumed
    relabelled = StudentData(mixup, soft, [tmp_path / "ss.parquet"], labels.assign(**{c: 0.2 for c in classes}))
    caplog.clear()
    with caplog.at_level("INFO"):
        train_fold([shard], folds, 0, MODEL, cfg, mel, tmp_path / "m", student=relabelled)
    assert "belongs to another configuration; starting over" in caplog.text


def test_a_checkpoint_soup_keeps_the_average_of_the_last_epochs(cache, tmp_path):
    out, folds, mel = cache
    cfg = TrainConfig.from_dict({**FAST, "epochs": 3, "soup_epochs": 2})
    metrics = train_fold([out / "s.parquet"], folds, 0, MODEL, cfg, mel, tmp_path / "soup")
    assert metrics["kept"] == "soup of the last 2 epochs"
    e2, e3 = (torch.load(tmp_path / "soup" / "soup" / f"epoch{e}.pt", weights_only=True) for e in (2, 3))
    assert not (tmp_path / "soup" / "soup" / "epoch1.pt").exists()
    _, payload = load_model(tmp_path / "soup" / "model.pt")
    assert payload["soup_epochs"] == 2
    for key, value in payload["state_dict"].items():
        expected = (e2[key] + e3[key]) / 2 if value.is_floating_point() else e3[key]
        torch.testing.assert_close(value, expected)
    with pytest.raises(ValueError, match="soup_epochs"):
        TrainConfig.from_dict({**FAST, "soup_epochs": 5})
