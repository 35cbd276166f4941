# BirdNET v2.4 embeddings (and logits) of every cached mel window: one shard per mel shard,
# for birdnet_head models and embedding distillation.


rule embed_shard:
    input:
        # ancient: the mel shard gives the window keys; a new mel frontend keeps the same
        # windows, so it must not redo BirdNET. The audio and params.rows decide.
        mels=ancient("results/mels/{set}/{shard}.parquet"),
        # training shards wait for the dedup checkpoint; ancient, as for the mel shards: a new
        # table reruns only the shards whose own clips (params.rows) or audio changed
        clips=lambda w: ancient("results/dedup/clips.parquet") if w.set == "train" else [],
        taxonomy=f"{DATA_DIR}/taxonomy.csv",
        audio=embedding_audio,
    output:
        "results/embeddings/{set}/{shard}.parquet",
    log:
        "results/logs/embed_shard/{set}/{shard}.log",
    benchmark:
        "results/benchmarks/embed_shard/{set}/{shard}.tsv"
    wildcard_constraints:
        set="train|soundscapes|validation",
    conda:
        "../envs/train.yaml"  # BirdNET, and the window cutting of the mel cache
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        embeddings=config["embeddings"],
        chunks=config["chunks"],
        rows=lambda w: mel_train_rows(w) if w.set == "train" else [],
        n_shards=lambda w: config["mel_shards"]["n_train_shards" if w.set == "train" else "n_soundscape_shards"],
    script:
        "../workflow_scripts/embed_shard.py"
