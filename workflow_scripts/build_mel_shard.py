"""Rules mel_train_shard, mel_soundscape_shard and mel_validation_shard: one shard of the log-mel cache."""

import logging

import pandas as pd

from birdclef.backgrounds import split_backgrounds
from birdclef.logs import run_logged
from birdclef.mel_shards import build_soundscape_shard, build_train_shard, write_shard
from birdclef.settings import ChunkConfig, MelConfig
from birdclef.shards import files_in_shard, shard_for


def in_shard(name: str, smk) -> bool:
    return shard_for(name, smk.params.n_shards) == smk.wildcards.shard


def main(smk) -> None:
    log = logging.getLogger(smk.rule)
    classes = pd.read_csv(smk.input.taxonomy)["primary_label"].astype(str).tolist()
    mel, chunks = MelConfig.from_dict(smk.params.mel), ChunkConfig.from_dict(smk.params.chunks)
    if smk.rule == "mel_train_shard":
        clips = pd.read_parquet(smk.input.clips)
        clips = clips[clips["keep"] & clips["clip_id"].map(lambda c: in_shard(c, smk))]
        log.info("%s: %d kept clips, %.0f s of audio", smk.wildcards.shard, len(clips), clips["duration_s"].sum())
        table = build_train_shard(clips, classes, mel, chunks, threads=smk.threads)
    else:
        paths = files_in_shard(smk.input.audio, smk.params.n_shards, smk.wildcards.shard)
        # train_soundscapes set aside as the built validation set's backgrounds (the demo's folder holds them)
        paths = split_backgrounds(paths, smk.params.get("background_share"))[0]
        log.info("%s: %d soundscapes", smk.wildcards.shard, len(paths))
        table = build_soundscape_shard(paths, classes, mel, chunks, threads=smk.threads)
    write_shard(table, smk.output[0], classes, mel, chunks)
    log.info("wrote %d rows (mel hash %s) to %s", table.num_rows, mel.hash, smk.output[0])


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
