# Stages 6 and 8: the fold split every model shares; teachers, then students, trained on each fold.


wildcard_constraints:
    fold=r"\d+",
    stage=STAGE_PATTERN,
    round=r"[1-9]\d*",
    model="|".join(MODELS) or "no-models",


rule folds:
    input:
        "results/dedup/clips.parquet",
    output:
        "results/folds.csv",
    log:
        "results/logs/folds.log",
    benchmark:
        "results/benchmarks/folds.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        folds=config["folds"],
    script:
        "../workflow_scripts/make_folds.py"


rule train_teacher:
    input:
        shards=expand("results/mels/train/{shard}.parquet", shard=MEL_TRAIN_SHARDS),
        folds="results/folds.csv",
        embeddings=training_embeddings("train", student=False),
        soundscape_embeddings=training_embeddings("soundscapes", student=False),
        soundscapes=lambda w: (
            expand("results/mels/soundscapes/{shard}.parquet", shard=MEL_SOUNDSCAPE_SHARDS)
            if training_embeddings("soundscapes", student=False)(w)
            else []
        ),
        pretrained=pretrained_record,
    output:
        # last.pt, best.pt and best_oof.parquet beside these are not declared:
        # a killed job, rerun, resumes from them.
        model="results/models/teacher/{model}/fold{fold}/model.pt",
        oof="results/models/teacher/{model}/fold{fold}/oof.parquet",
        history="results/models/teacher/{model}/fold{fold}/history.csv",
        metrics="results/models/teacher/{model}/fold{fold}/metrics.json",
    log:
        "results/logs/train_teacher/{model}/fold{fold}.log",
    benchmark:
        "results/benchmarks/train_teacher/{model}/fold{fold}.tsv"
    conda:
        "../envs/train.yaml"
    # Two 1-thread training jobs at once train 1.5x the samples/s of one 2-thread job on 2 cores
    # (benchmarks/train_step.py); a GPU node gives its job more with --set-threads.
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,  # asked of a cluster; a local run uses CUDA when present, else the CPU
    params:
        model=model_settings,
        train=train_config,
        mel=config["mel"],
    script:
        "../workflow_scripts/train_model.py"


rule train_student:
    input:
        shards=expand("results/mels/train/{shard}.parquet", shard=MEL_TRAIN_SHARDS),
        folds="results/folds.csv",
        soundscapes=expand("results/mels/soundscapes/{shard}.parquet", shard=MEL_SOUNDSCAPE_SHARDS),
        pseudo=lambda w: f"results/pseudo/round{round_of(w.stage)}/labels.parquet",
        teacher_oof=lambda w: round_teacher_outputs(round_of(w.stage), "oof.parquet"),
        embeddings=training_embeddings("train", student=True),
        soundscape_embeddings=training_embeddings("soundscapes", student=True),
        pretrained=pretrained_record,
    output:
        model="results/models/{stage}/{model}/fold{fold}/model.pt",
        oof="results/models/{stage}/{model}/fold{fold}/oof.parquet",
        history="results/models/{stage}/{model}/fold{fold}/history.csv",
        metrics="results/models/{stage}/{model}/fold{fold}/metrics.json",
    log:
        "results/logs/train_student/{stage}/{model}/fold{fold}.log",
    benchmark:
        "results/benchmarks/train_student/{stage}/{model}/fold{fold}.tsv"
    wildcard_constraints:
        stage=STUDENT_STAGE_PATTERN,
    conda:
        "../envs/train.yaml"
    # Two 1-thread training jobs at once train 1.5x the samples/s of one 2-thread job on 2 cores
    # (benchmarks/train_step.py); a GPU node gives its job more with --set-threads.
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        model=model_settings,
        train=student_train_config,
        mel=config["mel"],
        distill=lambda w: PLAN.student_distill(round_of(w.stage)),
        teacher_weights=lambda w: round_teacher_weights(round_of(w.stage)),
    script:
        "../workflow_scripts/train_model.py"


rule training_summary:
    input:
        history=lambda w: fold_outputs(w.stage, [w.model], "history.csv"),
        oof=lambda w: fold_outputs(w.stage, [w.model], "oof.parquet"),
        metrics=lambda w: fold_outputs(w.stage, [w.model], "metrics.json"),
    output:
        plot=report(
            "results/models/{stage}/{model}/training.png",
            caption="../report/training.rst",
            category="Training",
            subcategory="{stage}",
        ),
        summary="results/models/{stage}/{model}/summary.json",
    log:
        "results/logs/training_summary/{stage}/{model}.log",
    benchmark:
        "results/benchmarks/training_summary/{stage}/{model}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/summarize_training.py"
