"""Rule score_models: every teacher and student, each the mean of its folds, on the labelled validation windows."""

import logging

import pandas as pd
import torch

from birdclef.logs import run_logged
from birdclef.mel import MelConfig
from birdclef.metrics import score_against_solution
from birdclef.models import by_model
from birdclef.plots import plot_model_scores
from birdclef.predict import predict_shards

log = logging.getLogger("score_models")


def main(smk) -> None:
    torch.set_num_threads(smk.threads)
    mel = MelConfig.from_dict(smk.params.mel)
    solution = pd.read_csv(smk.input.solution)
    rows, per_class = [], {}
    for (stage, name), paths in by_model(smk.input.models).items():
        score, by_class = score_against_solution(predict_shards(paths, smk.input.windows, mel), solution)
        rows.append({"stage": stage, "model": name, "folds": len(paths), "macro_roc_auc": score})
        per_class[f"{stage}/{name}"] = by_class
        log.info("%s %s (%d folds): macro ROC-AUC %.4f on %d windows", stage, name, len(paths), score, len(solution))
    scores = pd.DataFrame(rows)
    scores.to_csv(smk.output.scores, index=False)
    pd.DataFrame(per_class).rename_axis("class").to_csv(smk.output.per_class)
    plot_model_scores(scores, smk.output.plot)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
