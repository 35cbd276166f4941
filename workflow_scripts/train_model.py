"""Rules train_teacher (and later train_student): train one model on one fold of the mel cache."""

from pathlib import Path

import pandas as pd
import torch

from birdclef.logs import run_logged
from birdclef.mel import MelConfig
from birdclef.models import ModelConfig
from birdclef.train import TrainConfig, train_fold


def main(smk) -> None:
    torch.set_num_threads(smk.threads)
    train_fold(
        list(smk.input.shards),
        pd.read_csv(smk.input.folds),
        int(smk.wildcards.fold),
        ModelConfig.from_dict(smk.params.model),
        TrainConfig.from_dict(smk.params.train),
        MelConfig.from_dict(smk.params.mel),
        Path(smk.output.model).parent,
    )


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
