"""Rule fit_ensemble: member weights fitted to the competition metric, with a cross-validated check of the fit."""

import logging

import pandas as pd

from birdclef.ensemble import class_scores, fit_ensemble
from birdclef.layout import by_model
from birdclef.logs import run_logged
from birdclef.members import oof_rows, validation_rows
from birdclef.metrics import OOF_ID_COLUMNS
from birdclef.plots import plot_class_scores, plot_ensemble
from birdclef.settings import EnsembleConfig
from birdclef.tables import write_json

log = logging.getLogger("fit_ensemble")


def main(smk) -> None:
    cfg = EnsembleConfig.from_dict({k: v for k, v in smk.params.ensemble.items() if k != "members"})
    members = list(smk.params.members)
    if smk.params.on_validation:
        # results/predictions/<stage>/<name>/validation.parquet, in member order
        predictions = {m: pd.read_parquet(p) for m, p in zip(members, smk.input.predictions, strict=True)}
        probs, truth, groups, classes = validation_rows(predictions, pd.read_csv(smk.input.solution[0]))
        fitted_on = "validation soundscapes"
    else:
        oofs = {
            f"{stage}/{name}": pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
            for (stage, name), paths in by_model(smk.input.predictions).items()
        }
        classes = [c for c in next(iter(oofs.values())).columns if c not in OOF_ID_COLUMNS]
        probs, truth, groups = oof_rows({m: oofs[m] for m in members}, classes)
        fitted_on = "out-of-fold chunks"
    log.info("fitting %d members on %d rows of %s (%s, %s)", len(members), len(truth), fitted_on, cfg.method, cfg.space)
    result = {"fitted_on": fitted_on, **fit_ensemble(probs, truth, groups, cfg)}
    for member, entry in result["members"].items():
        log.info("%s: weight %.3f, own macro ROC-AUC %.4f", member, entry["weight"], entry["score"])
    log.info("blend: %.4f in-sample, %.4f cross-validated", result["blend_score"], result["cv"]["mean"])
    write_json(result, smk.output.weights)
    plot_ensemble(result, smk.output.plot)
    weights = [result["members"][m]["weight"] for m in members]
    plot_class_scores(class_scores(probs, truth, weights, cfg.space, classes), smk.output.per_class)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
