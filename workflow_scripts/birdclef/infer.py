"""Inference on test soundscapes: audio, 5 s windows, the training mel frontend, every member, blend, submission rows.

- ``predict_files`` is a three-stage pipeline: a thread pool decodes files
  (libsndfile and resampling release the GIL), this thread computes mels with the
  same ``MelFrontend`` as the cache (on one torch thread: measured 1.4x faster
  end to end on 2 cores than two, which fight the decoders), and one more thread
  runs the members on a few files at a time (OpenVINO releases the GIL too), so
  the models work while the next mels are made. A file that cannot be decoded is
  set aside with its reason; the run goes on.
- ``assemble_submission`` lays the rows out exactly as ``sample_submission.csv``
  (its columns, its row order; windows it does not list are appended in file
  order) and fills every row without a prediction with the class prior, so that
  a corrupt or missing file costs its rows' score, never the submission.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from birdclef.mel import MelFrontend
from birdclef.mel_shards import audio_windows, read_mono, soundscape_starts, to_rate, window_row_id
from birdclef.settings import ChunkConfig, EmbeddingConfig, MelConfig

log = logging.getLogger(__name__)
Predict = Callable[[np.ndarray], np.ndarray]  # inputs (n x ...) -> probabilities (n x classes)
REJECTED_COLUMNS = ["file", "reason", "rows_filled"]


@dataclass(frozen=True)
class Member:
    """One ensemble member at inference: what it takes ("mels" or "embeddings", see birdclef.kinds) and its runner."""

    input: str
    predict: Predict


def _decode(
    path: Path, mel: MelConfig, chunks: ChunkConfig, embed: Callable | None
) -> tuple[list[float], np.ndarray, np.ndarray | None, float] | str:
    """Window starts, their audio at the mel rate, their BirdNET embeddings (or None) and the duration; or why not.

    The file is decoded once; the mel frontend's audio and BirdNET's 48 kHz audio are both resampled from it.
    """
    try:
        mono, sr = read_mono(path)
        if not np.isfinite(mono).all():
            return "audio holds NaN or infinite samples"
        starts, windows, duration = audio_windows(to_rate(mono, sr, mel.sample_rate), mel, chunks)
        if not starts:
            return f"too short for one window ({duration:.2f} s)"
        embeddings = embed(mono, sr, starts) if embed is not None else None
    except Exception as err:  # any decoder failure is this file's problem, not the run's
        return f"cannot decode: {type(err).__name__}: {err}"
    return starts, windows, embeddings, duration


def birdnet_embed(cfg: EmbeddingConfig, chunks: ChunkConfig, threads: int) -> Callable:
    """(mono audio, its rate, window starts) -> the windows' BirdNET embeddings, on ``threads`` interpreters."""
    from birdclef.birdnet import resample_to_48k
    from birdclef.embeddings import Embedders, embed_audio

    pool = Embedders(max(1, threads))

    def embed(mono: np.ndarray, sr: int, starts: list[float]) -> np.ndarray:
        return embed_audio(resample_to_48k(mono, sr), starts, cfg, chunks, pool)[0]

    return embed


def predict_files(
    paths: Sequence[str | Path],
    members: Sequence[Member],
    mel: MelConfig,
    chunks: ChunkConfig,
    threads: int = 1,
    files_per_step: int = 4,
    embed: Callable | None = None,
) -> tuple[pd.DataFrame, list[np.ndarray], list[dict]]:
    """Windows of every readable file: (row_id, id, offset_s), one probability matrix per member, rejected files.

    ``embed`` (see ``birdnet_embed``) gives BirdNET's embeddings to members that take them; it runs in
    the decoding threads, on the audio they decoded.
    """
    if embed is None and any(m.input == "embeddings" for m in members):
        raise ValueError("a member takes BirdNET embeddings, but no embed function was given")
    front = MelFrontend(mel)
    ids: list[tuple[str, str, float]] = []
    steps: list[Future] = []  # one per step of files, in order: every member's probabilities for its windows
    rejected: list[dict] = []
    pending: list[np.ndarray] = []
    pending_emb: list[np.ndarray] = []
    audio_s, t0 = 0.0, time.perf_counter()

    def run_members(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(m.predict(inputs[m.input]), dtype=np.float32) for m in members]

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max(1, threads)) as decoders, ThreadPoolExecutor(1) as models:
            decoded = decoders.map(lambda p: (Path(p), _decode(Path(p), mel, chunks, embed)), paths)
            for done, (path, result) in enumerate(decoded, start=1):
                if isinstance(result, str):
                    log.warning("%s: %s; its rows get the class prior", path.name, result)
                    rejected.append({"file": path.name, "path": str(path), "reason": result})
                else:
                    starts, windows, embeddings, duration = result
                    ids += [(window_row_id(path.stem, s, chunks), path.stem, s) for s in starts]
                    pending.append(front(windows).numpy())
                    if embeddings is not None:
                        pending_emb.append(embeddings)
                    audio_s += duration
                if pending and (len(pending) >= files_per_step or done == len(paths)):
                    inputs = {"mels": np.concatenate(pending)[:, None]}
                    if pending_emb:
                        inputs["embeddings"] = np.concatenate(pending_emb)
                    steps.append(models.submit(run_members, inputs))
                    pending.clear()
                    pending_emb.clear()
                if done % 50 == 0 or done == len(paths):
                    wall = time.perf_counter() - t0
                    log.info("%d/%d files, %.0f s of audio, %.0fx real time", done, len(paths), audio_s, audio_s / wall)
            results = [step.result() for step in steps]
    finally:
        torch.set_num_threads(torch_threads)
    probs = [np.concatenate([r[k] for r in results]) if results else np.zeros((0, 0)) for k in range(len(members))]
    return pd.DataFrame(ids, columns=["row_id", "id", "offset_s"]), probs, rejected


def file_row_ids(path: str | Path, chunks: ChunkConfig, fallback_seconds: float) -> list[str]:
    """The row ids a file should have: from its header's duration when readable, else ``fallback_seconds``."""
    try:
        duration = sf.info(str(path)).duration
    except Exception:  # unreadable header: assume the competition's file length
        duration = fallback_seconds
    return [window_row_id(Path(path).stem, s, chunks) for s in soundscape_starts(duration, chunks)]


def assemble_submission(
    predicted: pd.DataFrame,
    sample: pd.DataFrame,
    prior: pd.Series,
    expected_rows: dict[str, list[str]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The submission (``sample``'s columns and row order, then other predicted rows) and its prior-filled rows.

    ``predicted``: row_id plus one column per class. ``prior``: per class, used for
    every row without a prediction. ``expected_rows``: per set-aside file, the row ids
    it should have had; those not in ``sample`` are appended too.
    Returns the submission and a table (file, rows_filled) of the prior-filled rows.
    """
    columns = list(sample.columns)
    if not columns or columns[0] != "row_id":
        raise ValueError(f"sample_submission.csv must start with a row_id column, got {columns[:3]}")
    classes = columns[1:]
    missing = [c for c in classes if c not in prior.index]
    if missing:
        raise ValueError(f"sample_submission.csv has {len(missing)} classes the models do not know: {missing[:5]}")
    if predicted["row_id"].duplicated().any():
        raise ValueError("two windows share a row id: " + ", ".join(predicted["row_id"][predicted.duplicated()][:3]))
    expected = [r for rows in (expected_rows or {}).values() for r in rows]
    row_ids = list(dict.fromkeys([*sample["row_id"].astype(str), *predicted["row_id"], *expected]))
    out = predicted.set_index("row_id").reindex(row_ids)[classes]
    filled = out.isna().any(axis=1)
    out.loc[filled, :] = np.broadcast_to(prior[classes].to_numpy(), (int(filled.sum()), len(classes)))
    out = out.reset_index().rename(columns={"index": "row_id"})
    file_of = out.loc[filled.to_numpy(), "row_id"].str.rsplit("_", n=1).str[0]
    report = file_of.value_counts(sort=False).rename_axis("file").reset_index(name="rows_filled")
    return out[columns], report


def class_prior(labels: Sequence[str], classes: Sequence[str]) -> pd.Series:
    """Share of training clips per class, with one pseudo-count each so that no class is 0."""
    counts = pd.Series(list(labels)).value_counts().reindex(list(classes), fill_value=0)
    return (counts + 1) / (counts.sum() + len(classes))
