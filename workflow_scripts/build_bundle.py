"""Rule bundle: results/bundle/, the members' chosen IRs with predict.py, bundle.json, wheels and a Kaggle notebook."""

import json
import logging
from pathlib import Path

import pandas as pd

from birdclef.bundle import MemberFiles, build_bundle, class_prior
from birdclef.layout import audio_inputs, member_of
from birdclef.logs import run_logged
from birdclef.settings import ChunkConfig, EmbeddingConfig, MelConfig, PostprocessConfig

log = logging.getLogger("bundle")


def main(smk) -> None:
    cfg = smk.params.bundle
    fitted = json.loads(Path(smk.input.weights).read_text())
    weights = fitted["members"]
    members = [
        MemberFiles.from_quant(q, member_of(q), weights[member_of(q)]["weight"])
        for q in smk.input.exported
        if q.endswith("quant.json")
    ]
    classes = pd.read_csv(smk.input.taxonomy)["primary_label"].astype(str).tolist()
    clips = pd.read_parquet(smk.input.clips, columns=["primary_label", "keep"])
    prior = class_prior(clips.loc[clips["keep"], "primary_label"].astype(str), classes)
    spec = build_bundle(
        smk.output[0],
        members,
        classes,
        prior.to_numpy(),
        MelConfig.from_dict(smk.params.mel),
        ChunkConfig.from_dict(smk.params.chunks),
        EmbeddingConfig.from_dict(smk.params.embeddings),
        PostprocessConfig.from_dict(smk.params.postprocess),
        fitted["space"],
        smk.params.batch_size,
        smk.params.fallback_seconds,
        smk.input.wheels[0] if smk.input.wheels else None,
        {k: cfg[k] for k in ("kaggle_dataset", "competition", "threads", "time_budget_s")},
        audio_inputs(smk.input.timing)[: cfg["timing_soundscapes"]],
    )
    timing = spec["timing"] or {}
    log.info(
        "bundle: %d members, %d wheels; %s x real time on %s timing soundscapes",
        len(members),
        len(spec["wheels"]),
        timing.get("real_time_factor"),
        timing.get("files", 0),
    )


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
