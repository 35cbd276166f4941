"""Rule folds: the k-fold split of the kept clips that every model shares."""

import logging

import pandas as pd

from birdclef.folds import assign_folds
from birdclef.logs import run_logged
from birdclef.tables import write_csv

log = logging.getLogger(__name__)


def main(smk) -> None:
    clips = pd.read_parquet(smk.input[0])
    kept = clips[clips["keep"]]
    folds = assign_folds(kept, **smk.params.folds)
    write_csv(folds, smk.output[0], index=False)
    per_fold = (
        kept.merge(folds, on="clip_id")
        .groupby("fold")
        .agg(clips=("clip_id", "size"), classes=("primary_label", "nunique"))
    )
    log.info("%d kept clips in %d groups, per fold:\n%s", len(folds), folds["group"].nunique(), per_fold)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
