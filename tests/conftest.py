"""Shared fixtures: the repo, a tiny demo dataset, Snakemake in a scratch folder."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from birdclef.demo_data import generate
from birdclef.folds import assign_folds
from birdclef.manifest import build_manifest
from birdclef.mel_shards import build_soundscape_shard, build_train_shard, write_shard
from birdclef.models import BirdModel, save_model
from birdclef.settings import ChunkConfig, DemoConfig, MelConfig, ModelConfig

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_DATA = REPO.parent / "shared" / "data" / "nips4b-birdclef"

# Small enough to generate in seconds, big enough to hold every kind of file.
TINY_DEMO = {
    "seed": 7,
    "n_species": 4,
    "clips_per_species": [3, 4],
    "clip_seconds": [3.0, 8.0],
    "n_train_soundscapes": 2,
    "n_test_soundscapes": 2,
    "n_validation_soundscapes": 2,
    "soundscape_seconds": 20,
    "species_per_soundscape": [1, 2],
    "n_duplicates": 4,
    "messy": True,
}


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny messy demo dataset, generated once per test session. Treat as read-only."""
    out = tmp_path_factory.mktemp("tiny_demo")
    generate(out, DemoConfig.from_dict(TINY_DEMO), workers=2)
    return out


@pytest.fixture
def shared_data() -> Path:
    """The real NIPS4B recordings in ../shared/data; skips when they are absent."""
    if not (SHARED_DATA / "train.csv").is_file():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return SHARED_DATA


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run this repo's workflow with ``workdir`` as working directory."""
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), *args]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule -> number of jobs that a dry-run of this repo's workflow plans (empty when nothing to do)."""
    proc = run_snakemake(workdir, "-n", *args)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("\n")[3:]  # skip the header, its rule and the "job count" row
    jobs = {}
    for line in table:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


SHARD_MEL, SHARD_CHUNKS, SHARD_CLASSES = MelConfig(n_mels=32), ChunkConfig(chunk_s=5.0), ["a", "b", "c"]


@pytest.fixture(scope="session")
def soundscape_shard(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mel shard of the tiny demo's unlabelled soundscapes (32 mels, classes a, b, c)."""
    out = tmp_path_factory.mktemp("soundscape_shard") / "s.parquet"
    paths = sorted((tiny_demo / "train_soundscapes").glob("*.ogg"))
    table = build_soundscape_shard(paths, SHARD_CLASSES, SHARD_MEL, SHARD_CHUNKS)
    write_shard(table, out, SHARD_CLASSES, SHARD_MEL, SHARD_CHUNKS)
    return out


@dataclass(frozen=True)
class TrainCache:
    """A training mel shard (``<out>/s.parquet``) of every tiny demo clip, and what made it."""

    clips: pd.DataFrame
    classes: list[str]
    mel: MelConfig
    chunks: ChunkConfig
    folds: pd.DataFrame


def build_train_cache(tiny_demo: Path, out: Path) -> TrainCache:
    """Every clip of the tiny demo kept, two 2 s chunks each, 64 mels, in ``out/s.parquet``; two folds."""
    clips = build_manifest(tiny_demo, workers=2).clips.assign(
        keep=True,
        best_windows=lambda d: [[0.0, 2.0, 4.0]] * len(d),
        quality_reason="kept",
        dup_group=lambda d: d["clip_id"],
    )
    classes = sorted(pd.read_csv(tiny_demo / "taxonomy.csv")["primary_label"])
    mel, chunks = MelConfig(n_mels=64), ChunkConfig(chunk_s=2.0, chunks_per_clip=2, max_overlap=0.0)
    write_shard(build_train_shard(clips, classes, mel, chunks, threads=2), out / "s.parquet", classes, mel, chunks)
    folds = assign_folds(clips, n_folds=2, seed=0, by_author=False)
    return TrainCache(clips, classes, mel, chunks, folds)


def saved_model(path: Path, seed: int, classes: list[str] = SHARD_CLASSES, mel_hash: str = SHARD_MEL.hash) -> Path:
    """An untrained tiny model saved as training saves one (random weights from ``seed``)."""
    torch.manual_seed(seed)
    model = BirdModel(ModelConfig(backbone="mobilenetv3_small_050", head="sed"), len(classes)).eval()
    save_model(path, model, classes, {"mel_hash": mel_hash})
    return path
