# Stages 2-3: BirdNET listens to every clip (sharded), then the quality filter
# keeps or drops each clip and picks its best windows.


wildcard_constraints:
    shard=r"shard-\d{3}",


rule birdnet_scan:
    input:
        # ancient: a new manifest does not make every shard stale; a shard
        # reruns when its own audio files change or its set of clips does.
        clips=ancient("results/manifest/clips.parquet"),
        audio=birdnet_shard_audio,
    output:
        detections="results/birdnet/{shard}.parquet",
        segments="results/birdnet/{shard}.clips.parquet",
    log:
        "results/logs/birdnet_scan/{shard}.log",
    benchmark:
        "results/benchmarks/birdnet_scan/{shard}.tsv"
    conda:
        "../envs/birdnet.yaml"
    threads: 4
    resources:
        mem_mb=lambda wildcards, threads: 1000 + 500 * threads,
        runtime=240,
    params:
        n_shards=config["birdnet"]["n_shards"],
        birdnet={k: v for k, v in config["birdnet"].items() if k != "n_shards"},
    script:
        "../workflow_scripts/scan_birdnet_shard.py"


rule quality_filter:
    input:
        clips="results/manifest/clips.parquet",
        taxonomy=f"{DATA_DIR}/taxonomy.csv",
        detections=expand("results/birdnet/{shard}.parquet", shard=BIRDNET_SHARDS),
        segments=expand("results/birdnet/{shard}.clips.parquet", shard=BIRDNET_SHARDS),
        audio=all_clip_audio,
    output:
        clips="results/filter/clips.parquet",
        plot=report(
            "results/filter/quality_filter.png",
            caption="../report/quality_filter.rst",
            category="Training data",
        ),
    log:
        "results/logs/quality_filter.log",
    benchmark:
        "results/benchmarks/quality_filter.tsv"
    conda:
        "../envs/birdnet.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        filter={**config["quality_filter"], "window_s": config["chunks"]["chunk_s"]},
        location={k: config["birdnet"][k] for k in ("lat", "lon", "week")},
    script:
        "../workflow_scripts/run_quality_filter.py"
