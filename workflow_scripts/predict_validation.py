"""Rule predict_validation: one model (the mean of its folds) on every labelled validation window."""

import logging

import torch

from birdclef.logs import run_logged
from birdclef.predict import predict_shards
from birdclef.settings import MelConfig
from birdclef.tables import write_parquet

log = logging.getLogger("predict_validation")


def main(smk) -> None:
    torch.set_num_threads(smk.threads)
    predictions = predict_shards(
        smk.input.models, smk.input.windows, MelConfig.from_dict(smk.params.mel), embedding_paths=smk.input.embeddings
    )
    write_parquet(predictions, smk.output[0])
    w = smk.wildcards
    log.info("%s/%s (%d folds): %d windows", w.stage, w.model, len(smk.input.models), len(predictions))


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
