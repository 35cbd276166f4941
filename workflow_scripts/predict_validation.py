"""Rule predict_validation: one model on every labelled validation window.

On given validation soundscapes the model predicts by the mean of its folds. On
soundscapes built from held-out clips (rule build_validation) each window is
predicted by the one fold model that did not train on its clips, as the table of
soundscape -> fold says.
"""

import logging

import pandas as pd
import torch

from birdclef.layout import parse_fold_file
from birdclef.logs import run_logged
from birdclef.predict import predict_shards, predict_shards_by_fold
from birdclef.settings import MelConfig
from birdclef.tables import write_parquet

log = logging.getLogger("predict_validation")


def main(smk) -> None:
    torch.set_num_threads(smk.threads)
    mel = MelConfig.from_dict(smk.params.mel)
    if smk.input.fold_map:
        table = pd.read_csv(smk.input.fold_map[0])
        fold_of = dict(zip(table["soundscape"].astype(str), table["fold"].astype(int), strict=True))
        models = {parse_fold_file(path)[2]: path for path in smk.input.models}
        predictions = predict_shards_by_fold(
            models, smk.input.windows, mel, fold_of, embedding_paths=smk.input.embeddings
        )
        how = "each window by the fold model that did not train on its clips"
    else:
        predictions = predict_shards(smk.input.models, smk.input.windows, mel, embedding_paths=smk.input.embeddings)
        how = "mean of folds"
    write_parquet(predictions, smk.output[0])
    w = smk.wildcards
    log.info("%s/%s (%d folds, %s): %d windows", w.stage, w.model, len(smk.input.models), how, len(predictions))


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
