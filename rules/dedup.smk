# Stage 4: duplicate recordings grouped; one clip of each group is kept.
# A checkpoint: the clips it keeps decide what the mel shards read.


checkpoint dedup:
    input:
        clips="results/filter/clips.parquet",
        audio=all_clip_audio,
    output:
        clips="results/dedup/clips.parquet",
        duplicates=report(
            "results/dedup/duplicates.csv",
            caption="../report/duplicates_table.rst",
            category="Training data",
        ),
        plot=report(
            "results/dedup/duplicates.png",
            caption="../report/duplicates.rst",
            category="Training data",
        ),
    log:
        "results/logs/dedup.log",
    benchmark:
        "results/benchmarks/dedup.tsv"
    conda:
        "../envs/audio.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        dedup=config["dedup"],
    script:
        "../workflow_scripts/run_dedup.py"
