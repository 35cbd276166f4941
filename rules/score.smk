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


rule birdnet_zero_shot:
    input:
        embeddings=embedding_shards("validation"),
        taxonomy=f"{DATA_DIR}/taxonomy.csv",
    output:
        predictions="results/predictions/birdnet/zero_shot/validation.parquet",
        known="results/predictions/birdnet/zero_shot/known_classes.json",
    log:
        "results/logs/birdnet_zero_shot.log",
    benchmark:
        "results/benchmarks/birdnet_zero_shot.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        embeddings=config["embeddings"],
        birdnet={k: config["birdnet"][k] for k in ("lat", "lon", "week", "sensitivity")},  # what zero-shot uses
    script:
        "../workflow_scripts/predict_birdnet_zero_shot.py"


rule score_models:
    input:
        solution=VALIDATION_SOLUTION,
        predictions=[
            p for stage in ["teacher", *STUDENT_STAGES] for p in validation_predictions(stage, stage_models(stage))
        ],
        # BirdNET zero-shot, beside the models, where the embeddings are cached anyway
        zero_shot=ZERO_SHOT_OUTPUTS,
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


rule plot_zero_shot:
    input:
        per_class="results/scores/models_per_class.csv",
        known="results/predictions/birdnet/zero_shot/known_classes.json",
    output:
        report(
            "results/scores/embedding_members_vs_zero_shot.png",
            caption="../report/zero_shot.rst",
            category="Scores",
        ),
    log:
        "results/logs/plot_zero_shot.log",
    benchmark:
        "results/benchmarks/plot_zero_shot.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        members=EMBEDDING_MEMBERS,
    script:
        "../workflow_scripts/plot_zero_shot.py"


# Self-training round by round: each model's score per round on the validation windows,
# and each round's pseudo-label confidence.


rule plot_rounds:
    input:
        scores="results/scores/models.csv",
        labels=expand("results/pseudo/round{round}/labels.parquet", round=range(1, ROUNDS + 1)),
    output:
        report(
            "results/scores/rounds.png",
            caption="../report/rounds.rst",
            category="Scores",
        ),
    log:
        "results/logs/plot_rounds.log",
    benchmark:
        "results/benchmarks/plot_rounds.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/plot_rounds.py"
