"""Rule dedup: group duplicate recordings and keep one clip of each group."""

import pandas as pd

from birdclef.dedup import dedup_filtered
from birdclef.logs import run_logged
from birdclef.plots import plot_duplicates
from birdclef.tables import write_csv, write_parquet


def main(smk) -> None:
    cfg = smk.params.dedup
    clips, duplicates, pairs = dedup_filtered(
        pd.read_parquet(smk.input.clips),
        threshold=cfg["threshold"],
        workers=smk.threads,
        max_trim=cfg["max_trim"],
        duration_tol_s=cfg["duration_tol_s"],
    )
    write_parquet(clips, smk.output.clips)
    write_csv(duplicates, smk.output.duplicates, index=False)
    plot_duplicates(clips, duplicates, pairs["similarity"], smk.output.plot)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
