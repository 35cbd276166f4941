"""Rule birdnet_zero_shot: BirdNET's own confidence for each class it knows, on the validation windows.

From the logits cached with the embeddings (the same BirdNET pass). A class BirdNET does not
know (or that the location filter rules out) gets 0 for every window: no information, so its
ROC-AUC is 0.5; ``known_classes.json`` lists the classes it does know, which score_models
scores separately.
"""

import logging

import numpy as np
import pandas as pd

from birdclef.birdnet import reportable_species
from birdclef.embeddings import read_embeddings, zero_shot
from birdclef.logs import run_logged
from birdclef.quality_filter import birdnet_names_of
from birdclef.settings import EmbeddingConfig
from birdclef.tables import write_json, write_parquet

log = logging.getLogger("birdnet_zero_shot")


def main(smk) -> None:
    emb = read_embeddings(smk.input.embeddings, EmbeddingConfig.from_dict(smk.params.embeddings))
    taxonomy = pd.read_csv(smk.input.taxonomy)
    b = smk.params.birdnet
    species_of = birdnet_names_of(taxonomy, reportable_species(b["lat"], b["lon"], b["week"]))
    classes = taxonomy["primary_label"].astype(str).tolist()
    probs = zero_shot(emb, classes, species_of, b["sensitivity"])
    known = [c for k, c in enumerate(classes) if np.isfinite(probs[:, k]).all()]
    table = pd.concat([emb.rows.reset_index(drop=True), pd.DataFrame(np.nan_to_num(probs), columns=classes)], axis=1)
    write_parquet(table, smk.output.predictions)
    write_json({"known_classes": known, "n_classes": len(classes)}, smk.output.known)
    log.info("BirdNET knows %d of %d classes; %d validation windows", len(known), len(classes), len(table))


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
