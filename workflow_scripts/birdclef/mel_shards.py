"""Cached log-mel shards in Parquet: training chunks and soundscape windows.

One row per chunk: id, offset_s, row_id (soundscapes), primary (class index,
-1 for unlabelled windows), secondary (class indices), weight, and the log-mel as
float16 bytes. The class list, the mel parameters and their hash, the chunk
settings and the mel shape live once in the schema metadata; ``read_meta``
refuses a shard built with other mel parameters than the caller asks for.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from birdclef.bundle_predict import (  # the inference-time home of where windows are cut
    cut_windows,
    read_mono,
    to_rate,
    window_row_id,
)
from birdclef.mel import MelFrontend
from birdclef.settings import ChunkConfig, MelConfig
from birdclef.tables import write_parquet

log = logging.getLogger(__name__)

ROW_GROUP_SIZE = 32  # rows per row group: a random read decodes at most this many mels
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("offset_s", pa.float32()),
        ("row_id", pa.string()),
        ("primary", pa.int16()),
        ("secondary", pa.list_(pa.int16())),
        ("weight", pa.float32()),
        ("mel", pa.binary()),
    ]
)


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 at ``sample_rate`` (resampled when the file has another rate)."""
    return to_rate(*read_mono(path), sample_rate)


def choose_starts(best_windows: Sequence[float], duration_s: float, cfg: ChunkConfig) -> list[float]:
    """Up to ``chunks_per_clip`` starts from the filter's best windows (best first), none overlapping too much."""
    chosen: list[float] = []
    for start in best_windows:
        if all(abs(start - c) >= (1 - cfg.max_overlap) * cfg.chunk_s for c in chosen):
            chosen.append(float(start))
        if len(chosen) == cfg.chunks_per_clip:
            break
    return chosen or [max(0.0, (duration_s - cfg.chunk_s) / 2)]


@dataclass
class _Item:
    id: str
    path: str
    starts: list[float] | None  # None: every window (a soundscape)
    primary: int = -1
    secondary: tuple[int, ...] = ()
    weight: float = 1.0


def audio_windows(
    path: str | Path | np.ndarray, mel: MelConfig, cfg: ChunkConfig, starts: Sequence[float] | None = None
) -> tuple[list[float], np.ndarray, float]:
    """Window starts, the windows' audio (windows x samples) and the recording's duration (s).

    ``path``: a file, or its audio already at ``mel.sample_rate``. ``starts`` None cuts
    every window of a soundscape; training, pseudo-labelling and inference cut their
    windows here, so they cannot disagree on where one is.
    """
    audio = path if isinstance(path, np.ndarray) else load_audio(path, mel.sample_rate)
    return cut_windows(audio, mel.sample_rate, cfg, starts)


def _windows(item: _Item, mel: MelConfig, cfg: ChunkConfig) -> tuple[_Item, list[float], np.ndarray, float]:
    return item, *audio_windows(item.path, mel, cfg, item.starts)


def _rows(items: Iterable[_Item], mel: MelConfig, cfg: ChunkConfig, threads: int, soundscape: bool) -> pa.Table:
    """Decode (in ``threads`` threads) and compute mels (in this one) for ``items``, in their order."""
    torch.set_num_threads(max(1, threads))
    front = MelFrontend(mel)
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}
    audio_s = window_s = 0.0
    t0 = time.perf_counter()
    items = list(items)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for done, (item, starts, windows, duration) in enumerate(
            pool.map(lambda it: _windows(it, mel, cfg), items), start=1
        ):
            mels = front.numpy16(windows)
            for start, m in zip(starts, mels, strict=True):
                cols["id"].append(item.id)
                cols["offset_s"].append(start)
                cols["row_id"].append(window_row_id(item.id, start, cfg) if soundscape else None)
                cols["primary"].append(item.primary)
                cols["secondary"].append(list(item.secondary))
                cols["weight"].append(item.weight)
                cols["mel"].append(m.tobytes())
            audio_s += duration
            window_s += len(starts) * cfg.chunk_s
            if done % 50 == 0 or done == len(items):
                wall = time.perf_counter() - t0
                log.info(
                    "mels: %d/%d files, %d windows; %.0f s of audio decoded, %.0f s of windows (%.0fx real time)",
                    done,
                    len(items),
                    len(cols["id"]),
                    audio_s,
                    window_s,
                    window_s / max(wall, 1e-9),
                )
    return pa.Table.from_pydict(cols, schema=SCHEMA)


def train_items(clips: pd.DataFrame, classes: Sequence[str], cfg: ChunkConfig) -> Iterator[_Item]:
    """One item per kept clip (dedup's table): labels as class indices, weight, chosen starts."""
    index = {c: k for k, c in enumerate(classes)}
    for clip in clips.sort_values("clip_id").itertuples(index=False):
        primary = index[clip.primary_label]
        birdnet = getattr(clip, "birdnet_secondary", None)
        extra = list(clip.secondary_labels) + ([] if birdnet is None else list(birdnet))
        secondary = tuple(sorted({index[s] for s in extra if s in index} - {primary}))
        rescued = str(getattr(clip, "quality_reason", "")).startswith("kept: class minimum")
        yield _Item(
            clip.clip_id,
            clip.path,
            choose_starts(list(clip.best_windows), clip.duration_s, cfg),
            primary,
            secondary,
            cfg.rescued_weight if rescued else 1.0,
        )


def build_train_shard(
    clips: pd.DataFrame, classes: Sequence[str], mel: MelConfig, cfg: ChunkConfig, threads: int = 1
) -> pa.Table:
    """The training rows of ``clips`` (only those with ``keep``)."""
    return _rows(train_items(clips[clips["keep"]], classes, cfg), mel, cfg, threads, soundscape=False)


def build_soundscape_shard(
    paths: Sequence[str | Path], classes: Sequence[str], mel: MelConfig, cfg: ChunkConfig, threads: int = 1
) -> pa.Table:
    """Every window of every soundscape in ``paths`` (id = file stem, row_id = <stem>_<end second>)."""
    items = [_Item(Path(p).stem, str(p), None) for p in sorted(paths, key=lambda p: Path(p).stem)]
    return _rows(items, mel, cfg, threads, soundscape=True)


def write_shard(table: pa.Table, path: str | Path, classes: Sequence[str], mel: MelConfig, cfg: ChunkConfig) -> None:
    """Atomically, zstd, small row groups, with everything a reader needs in the metadata."""
    shape = [mel.n_mels, mel.n_frames(round(cfg.seconds * mel.sample_rate))]
    metadata = {
        "birdclef.mel": mel.to_json(),
        "birdclef.mel_hash": mel.hash,
        "birdclef.chunks": json.dumps(asdict(cfg), sort_keys=True),
        "birdclef.classes": json.dumps(list(classes)),
        "birdclef.mel_shape": json.dumps(shape),
    }
    write_parquet(table, path, metadata=metadata, row_group_size=ROW_GROUP_SIZE)


@dataclass(frozen=True)
class ShardMeta:
    classes: list[str]
    mel_shape: tuple[int, int]
    mel: MelConfig
    chunks: ChunkConfig


def read_meta(path: str | Path, expected: MelConfig | None = None) -> ShardMeta:
    """A shard's metadata; with ``expected``, refuse a shard built with other mel parameters."""
    meta = {k.decode(): v.decode() for k, v in (pq.read_schema(path).metadata or {}).items()}
    if "birdclef.mel_hash" not in meta:
        raise ValueError(f"{path}: not a mel shard (no birdclef.mel_hash in its metadata)")
    if expected is not None and meta["birdclef.mel_hash"] != expected.hash:
        raise ValueError(
            f"{path}: built with mel parameters {meta['birdclef.mel']} (hash {meta['birdclef.mel_hash']}), "
            f"but asked for {expected.to_json()} (hash {expected.hash}); rebuild the mel shards"
        )
    return ShardMeta(
        classes=json.loads(meta["birdclef.classes"]),
        mel_shape=tuple(json.loads(meta["birdclef.mel_shape"])),
        mel=MelConfig.from_dict(json.loads(meta["birdclef.mel"])),
        chunks=ChunkConfig.from_dict(json.loads(meta["birdclef.chunks"])),
    )


def decode_mel(blob: bytes, shape: Sequence[int]) -> np.ndarray:
    """A stored mel back to a float16 array of ``shape``."""
    return np.frombuffer(blob, dtype=np.float16).reshape(shape)
