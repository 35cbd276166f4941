"""Rule plot_rounds: each model's validation score per self-training round, and each round's pseudo-label confidence."""

import logging

import pandas as pd

from birdclef.logs import run_logged
from birdclef.plots import plot_rounds

log = logging.getLogger("plot_rounds")


def main(smk) -> None:
    scores = pd.read_csv(smk.input.scores)
    labels = [pd.read_parquet(p, columns=["max_prob"]) for p in smk.input.labels]
    for r, table in enumerate(labels, start=1):
        log.info("round %d: median window confidence %.3f over %d windows", r, table["max_prob"].median(), len(table))
    plot_rounds(scores, labels, smk.output[0])


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
