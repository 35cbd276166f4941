# Stage 5: cached log-mels in Parquet: training chunks, unlabelled soundscape windows,
# and the labelled validation soundscapes' windows.


rule mel_train_shard:
    input:
        # ancient: a new dedup table does not make every shard stale; the shard's
        # own clips (params.rows) and audio files decide.
        clips=ancient("results/dedup/clips.parquet"),
        taxonomy=f"{DATA_DIR}/taxonomy.csv",
        audio=mel_train_audio,
    output:
        "results/mels/train/{shard}.parquet",
    log:
        "results/logs/mel_train_shard/{shard}.log",
    benchmark:
        "results/benchmarks/mel_train_shard/{shard}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        mel=config["mel"],
        chunks=config["chunks"],
        n_shards=config["mel_shards"]["n_train_shards"],
        rows=mel_train_rows,
    script:
        "../workflow_scripts/build_mel_shard.py"


rule mel_soundscape_shard:
    input:
        taxonomy=f"{DATA_DIR}/taxonomy.csv",
        audio=soundscape_inputs,
    output:
        "results/mels/soundscapes/{shard}.parquet",
    log:
        "results/logs/mel_soundscape_shard/{shard}.log",
    benchmark:
        "results/benchmarks/mel_soundscape_shard/{shard}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        mel=config["mel"],
        chunks=config["chunks"],
        n_shards=config["mel_shards"]["n_soundscape_shards"],
        background_share=BACKGROUND_SHARE,  # the built validation set's backgrounds are left out
    script:
        "../workflow_scripts/build_mel_shard.py"


rule mel_validation_shard:
    input:
        taxonomy=f"{DATA_DIR}/taxonomy.csv",
        audio=validation_inputs,
    output:
        "results/mels/validation/{shard}.parquet",
    log:
        "results/logs/mel_validation_shard/{shard}.log",
    benchmark:
        "results/benchmarks/mel_validation_shard/{shard}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        mel=config["mel"],
        chunks=config["chunks"],
        n_shards=config["mel_shards"]["n_soundscape_shards"],
    script:
        "../workflow_scripts/build_mel_shard.py"
