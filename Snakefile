# BirdCLEF pipeline: raw recordings -> ... -> submission.csv, one Snakemake DAG.
# The stages and the files between them are described in README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/manifest.smk"


rule all:
    default_target: True
    input:
        "results/manifest/clips.parquet",
        "results/manifest/rejected.csv",
