"""Mel cache: build throughput, size on disk, and dataset read rate against the training step rate.

    .venv/bin/python benchmarks/mel_cache.py [--threads 2] [--batch 32]

Runs on a small generated demo dataset, and on ../shared/data/nips4b-birdclef when
present. For each it prints, in one run:
- build throughput (audio seconds of windows per wall second) of the shard builder
  (decoding in a thread pool, batched mels per file) against the naive path (decode,
  then one window at a time through the same frontend), and their ratio;
- cache size in bytes per audio second;
- MelShardDataset random-access read rate (samples/s, DataLoader with 2 workers)
  against the training step rate (samples/s, forward+backward+AdamW) of
  efficientnet_b0 (in_chans=1) on the same machine, and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

import timm  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from birdclef.bundle_predict import cut, soundscape_starts  # noqa: E402
from birdclef.dataset import MelShardDataset  # noqa: E402
from birdclef.demo_data import generate  # noqa: E402
from birdclef.layout import list_audio_files  # noqa: E402
from birdclef.mel import MelFrontend  # noqa: E402
from birdclef.mel_shards import build_soundscape_shard, load_audio, write_shard  # noqa: E402
from birdclef.settings import ChunkConfig, DemoConfig, MelConfig  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "nips4b-birdclef"
DEMO = {"seed": 5, "n_species": 6, "clips_per_species": [2, 3], "n_train_soundscapes": 8, "n_test_soundscapes": 0}


def naive(paths: list[Path], mel: MelConfig, chunks: ChunkConfig) -> float:
    front = MelFrontend(mel)
    front(np.zeros((1, 160_000), dtype=np.float32))  # warm, as ours is warmed below
    t0 = time.perf_counter()
    for p in paths:
        audio = load_audio(p, mel.sample_rate)
        for s in soundscape_starts(len(audio) / mel.sample_rate, chunks):
            front.numpy16(cut(audio, mel.sample_rate, s, chunks))
    return time.perf_counter() - t0


def train_rate(n_classes: int, shape: tuple[int, int], batch: int, steps: int = 6) -> float:
    model = timm.create_model("efficientnet_b0", in_chans=1, num_classes=n_classes, pretrained=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 1, *shape), torch.rand(batch, n_classes)
    model.train()
    for k in range(steps + 2):
        if k == 2:
            t0 = time.perf_counter()  # two warm-up steps
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def read_rate(ds: MelShardDataset, batch: int, workers: int) -> float:
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=False)
    t0, n = time.perf_counter(), 0
    for mels, _, _ in loader:
        n += len(mels)
    return n / (time.perf_counter() - t0)


def run(name: str, data: Path, out: Path, threads: int, batch: int) -> None:
    torch.set_num_threads(threads)
    mel, chunks = MelConfig(), ChunkConfig()
    classes = pd.read_csv(data / "taxonomy.csv")["primary_label"].tolist()
    root = data / "train_soundscapes"
    paths = [root / n for n in list_audio_files(root)]
    MelFrontend(mel)(np.zeros((4, 160_000), dtype=np.float32))  # warm torch once for both paths
    t0 = time.perf_counter()
    table = build_soundscape_shard(paths, classes, mel, chunks, threads=threads)
    ours = time.perf_counter() - t0
    shard = out / f"{name}.parquet"
    write_shard(table, shard, classes, mel, chunks)
    window_s = table.num_rows * chunks.chunk_s
    plain = naive(paths, mel, chunks)
    ds = MelShardDataset([shard], mel)
    reads = read_rate(ds, batch, workers=2)
    trains = train_rate(len(classes), ds.mel_shape, batch)
    print(f"\n== {name}: {len(paths)} soundscapes, {table.num_rows} windows, {window_s:.0f} s, {threads} threads")
    print(f"build, shard builder : {window_s / ours:8.0f}x real time ({ours:.2f} s)")
    print(f"build, naive per window: {window_s / plain:6.0f}x real time ({plain:.2f} s)")
    print(f"  ratio: {plain / ours:.2f}x   (target: builder >= 500x real time on 2 cores)")
    size = shard.stat().st_size
    print(f"cache size: {size / window_s:,.0f} bytes per audio second ({size / 1e6:.1f} MB)")
    print(f"dataset read (2 workers, shuffled): {reads:8.0f} samples/s")
    print(f"training step, efficientnet_b0, batch {batch}: {trains:6.1f} samples/s")
    print(f"  ratio read / train: {reads / trains:.1f}x   (target >= 5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out / "demo", DemoConfig.from_dict(DEMO), workers=args.threads)
        run("demo", out / "demo", out, args.threads, args.batch)
        if (REAL / "train_soundscapes").is_dir():
            run("nips4b", REAL, out, args.threads, args.batch)
        else:
            print(f"\n(no real data at {REAL}; skipped)")


if __name__ == "__main__":
    main()
