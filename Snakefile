# BirdCLEF pipeline: raw recordings -> ... -> submission.csv, one Snakemake DAG.
# The stages and the files between them are described in README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/manifest.smk"
include: "rules/quality.smk"
include: "rules/dedup.smk"
include: "rules/mels.smk"
include: "rules/train.smk"
include: "rules/pseudo.smk"
include: "rules/score.smk"
include: "rules/ensemble.smk"
include: "rules/export.smk"
include: "rules/infer.smk"


rule all:
    default_target: True
    input:
        "results/manifest/rejected.csv",
        "results/filter/quality_filter.png",
        "results/dedup/clips.parquet",
        "results/dedup/duplicates.csv",
        "results/dedup/duplicates.png",
        expand("results/mels/train/{shard}.parquet", shard=MEL_TRAIN_SHARDS),
        expand("results/mels/soundscapes/{shard}.parquet", shard=MEL_SOUNDSCAPE_SHARDS),
        expand("results/models/teacher/{model}/training.png", model=config["teachers"]),
        expand("results/pseudo/round{round}/pseudo_labels.png", round=range(1, ROUNDS + 1)),
        expand("results/models/{stage}/{model}/training.png", stage=STUDENT_STAGES, model=config["students"]),
        ["results/scores/models.png"] if HAS_VALIDATION else [],
        "results/ensemble/weights.json",
        "results/submission.csv",
        ["results/score.json"] if HAS_TEST_SOLUTION else [],
