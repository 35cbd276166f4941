# Each model's predictions on the labelled validation soundscapes (given, or built from
# held-out clips: then each window by its own fold's model), and the scores of every
# teacher and student on them.


rule predict_validation:
    input:
        windows=expand("results/mels/validation/{shard}.parquet", shard=MEL_SOUNDSCAPE_SHARDS),
        models=model_folds,
        embeddings=model_window_inputs("validation"),
        fold_map=validation_fold_map,
    output:
        "results/predictions/{stage}/{model}/validation.parquet",
    log:
        "results/logs/predict_validation/{stage}/{model}.log",
    benchmark:
        "results/benchmarks/predict_validation/{stage}/{model}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        mel=config["mel"],
    script:
        "../workflow_scripts/predict_validation.py"


rule score_models:
    input:
        solution=VALIDATION_SOLUTION,
        predictions=[
            p for stage in ["teacher", *STUDENT_STAGES] for p in validation_predictions(stage, stage_models(stage))
        ],
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
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        folds=len(FOLDS),
    script:
        "../workflow_scripts/score_models.py"
