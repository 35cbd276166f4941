# Stage 1: every training row and file, kept or set aside with its reason.
# A checkpoint: the clips it keeps decide which audio files later rules read.


checkpoint manifest:
    input:
        train_csv=f"{DATA_DIR}/train.csv",
        taxonomy=f"{DATA_DIR}/taxonomy.csv",
        audio=train_audio_inputs,
    output:
        clips="results/manifest/clips.parquet",
        rejected="results/manifest/rejected.csv",
        plot=report(
            "results/manifest/summary.png",
            caption="../report/data_summary.rst",
            category="Training data",
        ),
    log:
        "results/logs/manifest.log",
    benchmark:
        "results/benchmarks/manifest.tsv"
    conda:
        "../envs/audio.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        min_duration_s=config["manifest"]["min_duration_s"],
    script:
        "../workflow_scripts/build_manifest.py"
