"""Rule score_models: every teacher and student, each the mean of its folds, on the labelled validation windows."""

import json
import logging
from pathlib import Path

import pandas as pd

from birdclef.layout import member_of, parse_member
from birdclef.logs import run_logged
from birdclef.metrics import score_against_solution
from birdclef.plots import plot_model_scores
from birdclef.tables import write_csv

log = logging.getLogger("score_models")


def main(smk) -> None:
    solution = pd.read_csv(smk.input.solution)
    rows, per_class = [], {}
    named = [(*parse_member(member_of(path)), path) for path in smk.input.predictions]
    if smk.input.zero_shot:  # BirdNET's own classifier, where the embeddings are cached
        named.append(("birdnet", "zero_shot", smk.input.zero_shot[0]))
    known = json.loads(Path(smk.input.zero_shot[1]).read_text())["known_classes"] if smk.input.zero_shot else None
    for stage, name, path in named:
        score, by_class = score_against_solution(pd.read_parquet(path), solution)
        row = {"stage": stage, "model": name, "folds": smk.params.folds, "macro_roc_auc": score}
        if known is not None:  # on the classes BirdNET knows: where zero-shot is a fair comparison
            row["macro_roc_auc_birdnet_known"] = float(by_class.reindex(known).mean())
        rows.append(row)
        per_class[f"{stage}/{name}"] = by_class
        log.info("%s %s: macro ROC-AUC %.4f on %d windows", stage, name, score, len(solution))
    scores = pd.DataFrame(rows)
    write_csv(scores, smk.output.scores, index=False)
    write_csv(pd.DataFrame(per_class).rename_axis("class"), smk.output.per_class)
    plot_model_scores(scores, smk.output.plot)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
