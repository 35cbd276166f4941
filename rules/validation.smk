# Labelled validation soundscapes for data that has none: each fold's held-out clips laid on
# background soundscapes set aside from train_soundscapes/. In the DAG only when validation:
# names no labelled soundscapes that exist (BUILD_VALIDATION); they then score the models, fit
# the ensemble and judge INT8 like given ones, each window predicted by its own fold's model.


rule screen_backgrounds:
    input:
        backgrounds=background_soundscapes,
        taxonomy=f"{DATA_DIR}/taxonomy.csv",
    output:
        f"{BUILT_VALIDATION_DIR}/background_windows.csv",
    log:
        "results/logs/screen_backgrounds.log",
    benchmark:
        "results/benchmarks/screen_backgrounds.tsv"
    conda:
        "../envs/train.yaml"  # BirdNET, and the window cutting of the embedding cache
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        share=BACKGROUND_SHARE,
        embeddings=config["embeddings"],
        chunks=config["chunks"],
    script:
        "../workflow_scripts/screen_backgrounds.py"


rule build_validation:
    input:
        clips="results/dedup/clips.parquet",
        folds="results/folds.csv",
        taxonomy=f"{DATA_DIR}/taxonomy.csv",
        audio=kept_clip_audio,
        screen=f"{BUILT_VALIDATION_DIR}/background_windows.csv",
    output:
        soundscapes=directory(f"{BUILT_VALIDATION_DIR}/soundscapes"),
        solution=f"{BUILT_VALIDATION_DIR}/validation_solution.csv",
        folds=f"{BUILT_VALIDATION_DIR}/soundscape_folds.csv",
        slots=f"{BUILT_VALIDATION_DIR}/slots.csv",
        backgrounds=f"{BUILT_VALIDATION_DIR}/background_slots.csv",
        plot=report(
            f"{BUILT_VALIDATION_DIR}/example.png",
            caption="../report/built_validation.rst",
            category="Scores",
        ),
    log:
        "results/logs/build_validation.log",
    benchmark:
        "results/benchmarks/build_validation.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        build=PLAN.validation_build.to_dict(),
        sample_rate=config["mel"]["sample_rate"],
        slot_s=config["chunks"]["chunk_s"],
    script:
        "../workflow_scripts/build_validation.py"
