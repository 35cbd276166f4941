"""Rule embed_shard: BirdNET embeddings and logits of every window of one mel shard (train, soundscapes, validation)."""

import logging
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from birdclef.birdnet import birdnet_labels
from birdclef.embeddings import KEY_COLUMNS, build_embedding_shard, write_embedding_shard
from birdclef.logs import run_logged
from birdclef.quality_filter import birdnet_names_of
from birdclef.settings import ChunkConfig, EmbeddingConfig
from birdclef.shards import files_in_shard


def main(smk) -> None:
    log = logging.getLogger(smk.rule)
    cfg, chunks = EmbeddingConfig.from_dict(smk.params.embeddings), ChunkConfig.from_dict(smk.params.chunks)
    rows = pq.read_table(smk.input.mels, columns=KEY_COLUMNS).to_pandas()
    if smk.wildcards.set == "train":
        path_of = {row[0]: row[1] for row in smk.params.rows}  # (clip_id, path, ...) of the shard's kept clips
    else:
        path_of = {p.stem: str(p) for p in files_in_shard(smk.input.audio, smk.params.n_shards, smk.wildcards.shard)}
    species_of = birdnet_names_of(pd.read_csv(smk.input.taxonomy), dict(birdnet_labels()))
    log.info("%s/%s: %d windows of %d files", smk.wildcards.set, smk.wildcards.shard, len(rows), rows["id"].nunique())
    table, species = build_embedding_shard(rows, path_of, species_of, cfg, chunks, threads=smk.threads)
    write_embedding_shard(table, smk.output[0], species, cfg)
    log.info("wrote %d rows (logits of %d BirdNET species) to %s", table.num_rows, len(species), Path(smk.output[0]))


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
