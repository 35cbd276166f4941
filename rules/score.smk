# Scores on the labelled validation soundscapes (when there are any).


rule score_models:
    input:
        windows=expand("results/mels/validation/{shard}.parquet", shard=MEL_SOUNDSCAPE_SHARDS),
        solution=f"{DATA_DIR}/{config['validation']['solution']}",
        models=scored_models,
    output:
        scores="results/scores/models.csv",
        per_class="results/scores/models_per_class.csv",
        plot=report(
            "results/scores/models.png",
            caption="../report/model_scores.rst",
            category="Scores",
        ),
    log:
        "results/logs/score_models.log",
    benchmark:
        "results/benchmarks/score_models.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        mel=config["mel"],
    script:
        "../workflow_scripts/score_models.py"
