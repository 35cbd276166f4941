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
include: "rules/embeddings.smk"
include: "rules/pretrained.smk"
include: "rules/train.smk"
include: "rules/pseudo.smk"
include: "rules/validation.smk"
include: "rules/score.smk"
include: "rules/ensemble.smk"
include: "rules/export.smk"
include: "rules/bundle.smk"
include: "rules/infer.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
        "results/runtimes.png",
