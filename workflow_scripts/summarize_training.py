"""Rule training_summary: one model's folds together: pooled out-of-fold score, speed, and the curves."""

import json
import logging
from pathlib import Path

import pandas as pd

from birdclef.atomic import atomic_path
from birdclef.logs import run_logged
from birdclef.metrics import OOF_ID_COLUMNS, score_predictions
from birdclef.plots import plot_training

log = logging.getLogger(__name__)


def main(smk) -> None:
    histories = [pd.read_csv(p) for p in smk.input.history]
    metrics = [json.loads(Path(p).read_text()) for p in smk.input.metrics]
    oof = pd.concat([pd.read_parquet(p) for p in smk.input.oof], ignore_index=True)
    classes = [c for c in oof.columns if c not in OOF_ID_COLUMNS]
    summary = {
        "model": smk.wildcards.model,
        "stage": smk.wildcards.stage,
        "oof_macro_roc_auc": score_predictions(oof, classes),
        "fold_macro_roc_auc": [m["val_macro_roc_auc"] for m in metrics],
        "best_epochs": [m["best_epoch"] for m in metrics],
        "oof_chunks": len(oof),
        "train_samples_per_s": sum(m["train_samples_per_s"] for m in metrics) / len(metrics),
        "seconds_per_epoch": sum(m["seconds_per_epoch"] for m in metrics) / len(metrics),
        "device": metrics[0]["device"],
    }
    with atomic_path(smk.output.summary) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))  # as json.dump wrote it: NaN stays NaN
    log.info("%s", json.dumps(summary, indent=2))
    score = summary["oof_macro_roc_auc"]
    title = f"{smk.wildcards.stage} {smk.wildcards.model}: pooled out-of-fold macro ROC-AUC {score:.3f}"
    plot_training(histories, summary["best_epochs"], title, smk.output.plot)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
