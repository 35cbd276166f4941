"""Rule manifest: decode every training file; keep the usable, set aside the rest."""

import logging
from pathlib import Path

from birdclef.logs import run_logged
from birdclef.manifest import build_manifest, write_manifest
from birdclef.plots import plot_data_summary


def main(smk) -> None:
    result = build_manifest(Path(smk.input.train_csv).parent, smk.params.min_duration_s, workers=smk.threads)
    write_manifest(result, smk.output.clips, smk.output.rejected)
    plot_data_summary(result.clips, result.rejected, smk.output.plot)
    log = logging.getLogger("manifest")
    log.info(
        "train.csv rows: %d, files under train_audio/: %d -> kept %d clips (%.1f h of audio), rejected %d",
        result.n_rows,
        result.n_files,
        len(result.clips),
        result.clips["duration_s"].sum() / 3600,
        len(result.rejected),
    )
    for reason, count in result.rejected["reason"].str.split(":").str[0].value_counts().items():
        log.info("rejected %d: %s", count, reason)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
