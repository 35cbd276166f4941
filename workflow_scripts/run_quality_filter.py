"""Rule quality_filter: keep or drop each clip by what BirdNET (or the energy fallback) hears in it."""

import pandas as pd

from birdclef.birdnet import reportable_species
from birdclef.logs import run_logged
from birdclef.plots import plot_quality_filter
from birdclef.quality_filter import filter_clips
from birdclef.settings import FilterConfig
from birdclef.tables import write_parquet


def main(smk) -> None:
    clips = pd.read_parquet(smk.input.clips)
    detections = pd.concat([pd.read_parquet(p) for p in smk.input.detections], ignore_index=True)
    segments = pd.concat([pd.read_parquet(p) for p in smk.input.segments], ignore_index=True)
    loc = smk.params.location
    out = filter_clips(
        clips,
        detections,
        segments,
        pd.read_csv(smk.input.taxonomy),
        reportable_species(loc["lat"], loc["lon"], loc["week"]),
        FilterConfig.from_dict(smk.params.filter),
        workers=smk.threads,
    )
    write_parquet(out, smk.output.clips)
    plot_quality_filter(out, smk.output.plot)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
