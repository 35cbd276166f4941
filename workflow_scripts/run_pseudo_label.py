"""Rule pseudo_label: blend the teachers' (and BirdNET's) predictions on every soundscape window."""

import json
import logging

import pandas as pd
import torch

from birdclef.birdnet import reportable_species
from birdclef.embeddings import read_embeddings
from birdclef.layout import by_model
from birdclef.logs import run_logged
from birdclef.plots import plot_pseudo_labels
from birdclef.pseudo import PSEUDO_COLUMNS, pseudo_labels
from birdclef.quality_filter import birdnet_names_of
from birdclef.settings import MelConfig
from birdclef.tables import write_parquet

log = logging.getLogger("pseudo_label")


def main(smk) -> None:
    torch.set_num_threads(smk.threads)
    cfg = smk.params.pseudo
    families = by_model(smk.input.models)
    teachers = {name: families[(smk.params.teacher_stage, name)] for name in smk.params.teachers}
    birdnet = None
    if cfg["birdnet_weight"] > 0:  # BirdNET's confidences from the logits cached with the windows' embeddings
        b = smk.params.birdnet
        species_of = birdnet_names_of(
            pd.read_csv(smk.input.taxonomy), reportable_species(b["lat"], b["lon"], b["week"])
        )
        birdnet = (read_embeddings(smk.input.embeddings), species_of, cfg["birdnet_weight"])
    labels = pseudo_labels(
        teachers,
        smk.params.teacher_weights,
        smk.input.windows,
        MelConfig.from_dict(smk.params.mel),
        birdnet,
        sensitivity=smk.params.birdnet["sensitivity"],
        power=cfg["power"],
        min_max_prob=cfg["min_max_prob"],
        embedding_paths=list(smk.input.embeddings),
        n_folds=smk.params.n_folds,
        out_of_fold=smk.params.out_of_fold,
    )
    write_parquet(labels, smk.output.labels, metadata={"birdclef.pseudo_label": json.dumps(cfg)})
    log.info("%d of %d windows kept; sources %s", labels["keep"].sum(), len(labels), labels["teachers"].iat[0])
    classes = [c for c in labels.columns if c not in PSEUDO_COLUMNS]
    plot_pseudo_labels(labels, classes, cfg["min_max_prob"], smk.output.plot)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
