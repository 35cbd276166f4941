"""BirdNET's screen of the background recordings that the built validation set lays its clips on.

A built soundscape's empty slot is a negative for every class, and a slot's clip labels
only its own species. When the background under a slot holds a call of a taxonomy
species, that label is wrong: on NIPS4B, BirdNET heard a NIPS4B species at confidence
0.5 or more in 36 % of the empty slots of the first built set, a cap on every model's
score. So the backgrounds are cut into their own 5 s windows (``chunks.chunk_s``, from
0 s, whole windows only), BirdNET scores each one with the embedding cache's layout
(``embeddings.embed_windows``: the same segments, the maximum logit over them), and
rule build_validation lays a slot only on a window where BirdNET's confidence
(sigmoid, sensitivity 1) for every BirdNET species of the taxonomy stays below
``validation.build.background_max_confidence``.

What it cannot remove: calls of classes BirdNET does not know (insects, renamed
species), and calls it misses. It also favours the models that hear as BirdNET does:
the windows left are those where BirdNET hears nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.birdnet import birdnet_sigmoid
from birdclef.embeddings import embed_windows, logit_species
from birdclef.settings import ChunkConfig, EmbeddingConfig

log = logging.getLogger(__name__)

SCREEN_COLUMNS = ["background", "start_s", "max_confidence", "species"]


def background_windows(durations: Mapping[str, float], chunk_s: float) -> pd.DataFrame:
    """Every whole ``chunk_s`` window of each background (path -> seconds): columns id (the path) and offset_s."""
    rows = [(path, k * chunk_s) for path, seconds in durations.items() for k in range(int(seconds // chunk_s + 1e-9))]
    return pd.DataFrame(rows, columns=["id", "offset_s"])


def screen_backgrounds(
    paths: Sequence[str | Path],
    species_of: Mapping[str, str],
    cfg: EmbeddingConfig,
    chunks: ChunkConfig,
    threads: int = 1,
) -> pd.DataFrame:
    """Per window of each background: its start, BirdNET's highest confidence for a taxonomy species, and which.

    ``species_of``: taxonomy class -> BirdNET species (``quality_filter.birdnet_names_of``).
    When BirdNET knows none of them, every window gets confidence 0 and species "".
    """
    import soundfile as sf

    durations = {str(p): sf.info(str(p)).duration for p in paths}
    windows = background_windows(durations, chunks.chunk_s)
    species, species_index = logit_species(species_of)
    if windows.empty or not species:
        if not species:
            log.warning("BirdNET knows none of the taxonomy's species: the backgrounds are not screened")
        return windows.rename(columns={"id": "background", "offset_s": "start_s"}).assign(
            max_confidence=0.0, species=""
        )[SCREEN_COLUMNS]
    _, logits = embed_windows(windows, {p: p for p in durations}, species_index, cfg, chunks, threads)
    confidence = birdnet_sigmoid(logits)
    top = confidence.argmax(axis=1)
    return pd.DataFrame(
        {
            "background": windows["id"],
            "start_s": windows["offset_s"].astype(float),
            "max_confidence": confidence[np.arange(len(top)), top].astype(float),
            "species": [species[k] for k in top],
        }
    )


def clean_windows(screen: pd.DataFrame, max_confidence: float) -> pd.DataFrame:
    """The windows of ``screen`` where BirdNET's highest taxonomy confidence is below ``max_confidence``."""
    return screen[screen["max_confidence"] < max_confidence].reset_index(drop=True)
