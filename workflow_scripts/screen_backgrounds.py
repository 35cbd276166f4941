"""Rule screen_backgrounds: BirdNET's highest taxonomy confidence in every 5 s window of the set-aside backgrounds."""

import logging
from pathlib import Path

import pandas as pd

from birdclef.background_screen import clean_windows, screen_backgrounds
from birdclef.backgrounds import split_backgrounds
from birdclef.birdnet import birdnet_labels
from birdclef.layout import list_audio_files
from birdclef.logs import run_logged
from birdclef.quality_filter import birdnet_names_of
from birdclef.settings import ChunkConfig, EmbeddingConfig
from birdclef.tables import write_csv

log = logging.getLogger("screen_backgrounds")


def background_files(inputs: list[str], share: float) -> list[Path]:
    """The soundscapes set aside as backgrounds among ``inputs`` (files; the demo's folder stands for its files)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        paths += [item / name for name in list_audio_files(item)] if item.is_dir() else [item]
    return split_backgrounds(paths, share)[1]


def main(smk) -> None:
    backgrounds = background_files(smk.input.backgrounds, smk.params.share)
    species_of = birdnet_names_of(pd.read_csv(smk.input.taxonomy), dict(birdnet_labels()))
    known = sum(bool(s) for s in species_of.values())
    log.info(
        "%d background recordings; BirdNET knows %d of %d taxonomy classes", len(backgrounds), known, len(species_of)
    )
    cfg, chunks = EmbeddingConfig.from_dict(smk.params.embeddings), ChunkConfig.from_dict(smk.params.chunks)
    screen = screen_backgrounds(backgrounds, species_of, cfg, chunks, threads=smk.threads)
    for threshold in (0.05, 0.1, 0.2, 0.5):
        clean = len(clean_windows(screen, threshold))
        log.info("windows where BirdNET stays below %.2f: %d of %d", threshold, clean, len(screen))
    write_csv(screen, smk.output[0], index=False)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
