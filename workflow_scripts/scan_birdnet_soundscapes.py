"""Rule birdnet_soundscape_shard: BirdNET detections for the unlabelled soundscapes of one shard."""

import logging

from birdclef.backgrounds import split_backgrounds
from birdclef.birdnet import scan_with_config
from birdclef.logs import run_logged
from birdclef.shards import files_in_shard
from birdclef.tables import write_parquet


def main(smk) -> None:
    paths = files_in_shard(smk.input.audio, smk.params.n_shards, smk.wildcards.shard)
    paths = split_backgrounds(paths, smk.params.background_share)[0]  # the built validation set's backgrounds
    logging.getLogger(smk.rule).info("%s: %d soundscapes", smk.wildcards.shard, len(paths))
    cfg = smk.params.birdnet
    result = scan_with_config([(p.stem, p) for p in paths], cfg, threads=smk.threads)
    write_parquet(result.detections, smk.output[0], metadata={f"birdnet.{k}": str(v) for k, v in cfg.items()})


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
