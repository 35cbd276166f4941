# Hub weights: each model whose pretrained: is an hf-hub:<repo> name is fetched once into the
# Hugging Face cache, before it trains. The record holds the resolved revision (the snapshot's
# commit); the training jobs load exactly that snapshot and write it into metrics.json.
# A fetched name is not fetched again: `snakemake -R pretrained_weights` follows a moved main.


rule pretrained_weights:
    output:
        record="results/pretrained/{model}.json",
    log:
        "results/logs/pretrained_weights/{model}.log",
    benchmark:
        "results/benchmarks/pretrained_weights/{model}.tsv"
    wildcard_constraints:
        model="|".join(HUB_MODELS) or "no-hub-models",
    # First (it has no inputs), and on a cluster where Snakemake runs (login nodes reach the
    # internet more often than compute nodes): a name that cannot be fetched fails early.
    priority: 100
    localrule: True
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        name=lambda w: MODELS[w.model].model.pretrained,
        backbone=lambda w: MODELS[w.model].model.backbone,
    script:
        "../workflow_scripts/fetch_pretrained.py"
