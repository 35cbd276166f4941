"""Rule birdnet_scan: BirdNET detections for the clips of one shard."""

import logging

import pandas as pd

from birdclef.birdnet import scan_with_config
from birdclef.logs import run_logged
from birdclef.shards import shard_for
from birdclef.tables import write_parquet


def main(smk) -> None:
    log = logging.getLogger("birdnet_scan")
    clips = pd.read_parquet(smk.input.clips, columns=["clip_id", "path", "duration_s"])
    n_shards = smk.params.n_shards
    mine = clips[[shard_for(c, n_shards) == smk.wildcards.shard for c in clips["clip_id"]]]
    mine = mine.sort_values("clip_id")
    log.info(
        "%s of %d: %d of %d clips, %.0f s of audio",
        smk.wildcards.shard,
        n_shards,
        len(mine),
        len(clips),
        mine["duration_s"].sum(),
    )
    cfg = smk.params.birdnet
    result = scan_with_config(list(zip(mine["clip_id"], mine["path"], strict=True)), cfg, threads=smk.threads)
    settings = {f"birdnet.{k}": str(v) for k, v in cfg.items()}
    write_parquet(result.detections, smk.output.detections, metadata=settings)
    write_parquet(result.segments.astype({"error": "string"}), smk.output.segments, metadata=settings)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
