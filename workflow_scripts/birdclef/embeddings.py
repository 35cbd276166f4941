"""The BirdNET embedding cache: BirdNET v2.4's embedding and class logits of every cached mel window.

One row per window of a mel shard, with the same keys (id, offset_s, row_id), so
that embeddings join the mel rows, out-of-fold predictions and soft targets. A
shard of embeddings belongs to the mel shard of the same name (same stable hash of
the id), so adding one clip recomputes one shard of each.

Layout of a window (``EmbeddingConfig``): the window's own ``chunk_s`` seconds
(no context), cut from the recording exactly as the mel cache cuts it
(``bundle_predict.cut``, short clips tiled), but from audio resampled to 48 kHz with
BirdNET's filter (``birdnet.read_48k``); BirdNET embeds the 3 s segments starting
at ``segment_starts`` seconds into it. The window's embedding is the mean of its
segments' embeddings; its logit per BirdNET class the maximum over its segments.

Columns: id, offset_s, row_id, embedding (1024 float16 as bytes), logits (float16
bytes, one per BirdNET class whose species is in the taxonomy: ``species`` in the
metadata, in order). The metadata holds the BirdNET model file's hash and the
segment layout; ``read_embeddings`` refuses a cache built with another model or
layout, as the mel cache refuses other mel parameters.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from birdclef import birdnet
from birdclef.bundle_predict import InterpreterPool, embed_audio  # the one definition of a window's embedding
from birdclef.settings import ChunkConfig, EmbeddingConfig
from birdclef.tables import write_parquet

log = logging.getLogger(__name__)

KEY_COLUMNS = ["id", "offset_s", "row_id"]
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("offset_s", pa.float32()),
        ("row_id", pa.string()),
        ("embedding", pa.binary()),
        ("logits", pa.binary()),
    ]
)
META_MODEL = "birdclef.birdnet_model_hash"
META_LAYOUT = "birdclef.embedding_layout"
META_SPECIES = "birdclef.birdnet_species"


def read_audio_48k(path: str | Path) -> np.ndarray:
    """The whole recording, mono, at 48 kHz with BirdNET's resampling filter."""
    pieces = list(birdnet.read_48k(path))
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def species_columns(species_of: Mapping[str, str]) -> list[str]:
    """The BirdNET species whose logits are kept: those some taxonomy class maps to, sorted."""
    return sorted({s for s in species_of.values() if s})


def logit_species(species_of: Mapping[str, str]) -> tuple[list[str], np.ndarray]:
    """The BirdNET species kept (``species_columns``) and their positions among BirdNET's logits."""
    species = species_columns(species_of)
    position = {s: k for k, (s, _) in enumerate(birdnet.birdnet_labels())}
    return species, np.array([position[s] for s in species], dtype=int)


@dataclass(frozen=True)
class _File:
    id: str
    path: str
    offsets: list[float]


def embed_windows(
    rows: pd.DataFrame,
    path_of: Mapping[str, str],
    species_index: np.ndarray,
    cfg: EmbeddingConfig,
    chunks: ChunkConfig,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (n x 1024) and kept logits (n x len(species_index)) of ``rows`` (id, offset_s), in row order.

    Each file is decoded and resampled once, by the thread that embeds its windows.
    """
    rows = rows.reset_index(drop=True)
    missing = sorted({str(i) for i in rows["id"]} - set(path_of))
    if missing:  # before any lookup: the clear error, not a KeyError
        raise ValueError(f"no audio file for {len(missing)} ids, e.g. {missing[:3]}")
    where = rows.groupby("id", sort=False).indices  # file id -> its rows, once
    offsets = rows["offset_s"].astype(float).to_numpy()
    files = [_File(str(i), path_of[str(i)], offsets[idx].tolist()) for i, idx in where.items()]
    pool = InterpreterPool(birdnet.BirdNetEmbedder, threads)

    def one(f: _File) -> tuple[np.ndarray, np.ndarray]:
        emb, logits = embed_audio(read_audio_48k(f.path), f.offsets, cfg.segment_starts, chunks.chunk_s, pool)
        return emb, logits[:, species_index]

    emb_out = np.zeros((len(rows), birdnet.EMBEDDING_DIM), np.float32)
    logit_out = np.zeros((len(rows), len(species_index)), np.float32)
    t0, n_windows = time.perf_counter(), 0
    with ThreadPoolExecutor(max(1, threads)) as ex:
        for done, (f, (emb, logits)) in enumerate(zip(files, ex.map(one, files), strict=True), start=1):
            idx = where[f.id]
            emb_out[idx], logit_out[idx] = emb, logits
            n_windows += len(idx)
            if done % 50 == 0 or done == len(files):
                wall = time.perf_counter() - t0
                log.info(
                    "BirdNET embeddings: %d/%d files, %d windows, %.1f windows/s",
                    done,
                    len(files),
                    n_windows,
                    n_windows / max(wall, 1e-9),
                )
    return emb_out, logit_out


def build_embedding_shard(
    mel_rows: pd.DataFrame,
    path_of: Mapping[str, str],
    species_of: Mapping[str, str],
    cfg: EmbeddingConfig,
    chunks: ChunkConfig,
    threads: int = 1,
) -> tuple[pa.Table, list[str]]:
    """The embedding rows of one mel shard's rows (id, offset_s, row_id), and the species of its logits."""
    species, species_index = logit_species(species_of)
    emb, logits = embed_windows(mel_rows, path_of, species_index, cfg, chunks, threads)
    table = pa.Table.from_pydict(
        {
            "id": mel_rows["id"].astype(str).tolist(),
            "offset_s": mel_rows["offset_s"].astype(np.float32).tolist(),
            "row_id": [None if pd.isna(r) else str(r) for r in mel_rows["row_id"]],
            "embedding": [e.astype(np.float16).tobytes() for e in emb],
            "logits": [g.astype(np.float16).tobytes() for g in logits],
        },
        schema=SCHEMA,
    )
    return table, species


def write_embedding_shard(table: pa.Table, path: str | Path, species: Sequence[str], cfg: EmbeddingConfig) -> None:
    """Atomically, with the BirdNET model hash, the segment layout and the logit species in the metadata."""
    metadata = {
        META_MODEL: birdnet.model_hash(),
        META_LAYOUT: cfg.to_json(),
        META_SPECIES: json.dumps(list(species)),
    }
    write_parquet(table, path, metadata=metadata)


@dataclass(frozen=True)
class Embeddings:
    """A read embedding cache: keys in file then row order, embeddings, logits and the logits' species."""

    rows: pd.DataFrame  # id, offset_s, row_id
    embeddings: np.ndarray  # n x 1024, float32
    logits: np.ndarray  # n x len(species), float32
    species: list[str]

    def aligned_to(self, keys: pd.DataFrame) -> Embeddings:
        """These embeddings in the order of ``keys`` (id, offset_s); a key without an embedding is an error."""
        index = pd.MultiIndex.from_arrays([self.rows["id"], self.rows["offset_s"].astype(np.float32)])
        wanted = pd.MultiIndex.from_arrays([keys["id"].astype(str), keys["offset_s"].astype(np.float32)])
        pos = index.get_indexer(wanted)
        if (pos < 0).any():
            first = wanted[np.flatnonzero(pos < 0)[0]]
            raise ValueError(f"{int((pos < 0).sum())} windows have no BirdNET embedding, e.g. {first}; rebuild them")
        return Embeddings(
            self.rows.iloc[pos].reset_index(drop=True), self.embeddings[pos], self.logits[pos], self.species
        )


def read_embeddings(paths: Sequence[str | Path], cfg: EmbeddingConfig | None = None) -> Embeddings:
    """Every row of the embedding shards ``paths``; refuses shards of another BirdNET model or segment layout."""
    if not paths:
        raise ValueError("no embedding shards given")
    frames, embs, logits, species = [], [], [], None
    for path in paths:
        meta = {k.decode(): v.decode() for k, v in (pq.read_schema(path).metadata or {}).items()}
        if META_MODEL not in meta:
            raise ValueError(f"{path}: not an embedding shard (no {META_MODEL} in its metadata)")
        if meta[META_MODEL] != birdnet.model_hash():
            raise ValueError(
                f"{path}: built with the BirdNET model of hash {meta[META_MODEL]}, but this one's is "
                f"{birdnet.model_hash()}; rebuild the embedding shards"
            )
        if cfg is not None and meta[META_LAYOUT] != cfg.to_json():
            raise ValueError(f"{path}: segment layout {meta[META_LAYOUT]}, asked for {cfg.to_json()}; rebuild it")
        shard_species = json.loads(meta[META_SPECIES])
        if species is not None and shard_species != species:
            raise ValueError(f"{path}: its logit species differ from {paths[0]}'s (another taxonomy?)")
        species = shard_species
        table = pq.read_table(path)
        frames.append(table.select(KEY_COLUMNS).to_pandas())
        for column, out in (("embedding", embs), ("logits", logits)):
            blobs = table.column(column).to_pylist()
            width = birdnet.EMBEDDING_DIM if column == "embedding" else len(species)
            out.append(np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), width).astype(np.float32))
    return Embeddings(
        pd.concat(frames, ignore_index=True), np.concatenate(embs), np.concatenate(logits), list(species or [])
    )


def zero_shot(
    emb: Embeddings, classes: Sequence[str], species_of: Mapping[str, str], sensitivity: float = 1.0
) -> np.ndarray:
    """BirdNET's own confidence per class and window (n x classes); NaN for classes it does not know.

    ``species_of``: class -> the BirdNET species it is ("" for none); several classes may share one
    (a song and a call class). ``sensitivity``: birdnetlib's, 0.5..1.5.
    """
    column = {s: k for k, s in enumerate(emb.species)}
    out = np.full((len(emb.rows), len(classes)), np.nan)
    for k, c in enumerate(classes):
        s = species_of.get(c, "")
        if s in column:
            out[:, k] = birdnet.birdnet_sigmoid(emb.logits[:, column[s]], sensitivity)
    return out
