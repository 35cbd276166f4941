"""Rule score: the submission against the test soundscapes' labels, with the competition metric."""

import logging

import pandas as pd

from birdclef.logs import run_logged
from birdclef.metrics import score_against_solution
from birdclef.tables import write_json

log = logging.getLogger("score")


def main(smk) -> None:
    solution = pd.read_csv(smk.input.solution)
    submission = pd.read_csv(smk.input.submission)
    if submission.empty:  # no test soundscapes this run: nothing to score, and no reason to fail the run
        log.warning("the submission is empty: no score against %d solution rows", len(solution))
        empty = {"macro_roc_auc": None, "rows": 0, "reason": "empty submission (no test soundscapes)"}
        write_json(empty, smk.output[0])
        return
    score, per_class = score_against_solution(submission, solution)
    result = {
        "macro_roc_auc": score,
        "rows": len(solution),
        "classes_scored": int(per_class.notna().sum()),
        "per_class": {c: (None if pd.isna(v) else float(v)) for c, v in per_class.items()},
    }
    write_json(result, smk.output[0])
    n_classes = result["classes_scored"]
    log.info("submission: macro ROC-AUC %.4f over %d classes on %d rows", score, n_classes, len(solution))


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
