"""Rule plot_zero_shot: per class, each birdnet_head member against BirdNET's own zero-shot scores."""

import json
import logging
from pathlib import Path

import pandas as pd

from birdclef.logs import run_logged
from birdclef.plots import plot_against_zero_shot


def main(smk) -> None:
    per_class = pd.read_csv(smk.input.per_class, index_col="class")
    known = json.loads(Path(smk.input.known).read_text())["known_classes"]
    plot_against_zero_shot(per_class, list(smk.params.members), known, smk.output[0])
    logging.getLogger("plot_zero_shot").info("%d members, %d known classes", len(smk.params.members), len(known))


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
