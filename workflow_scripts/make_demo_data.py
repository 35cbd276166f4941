"""Rule demo_data: write the synthetic BirdCLEF dataset (see birdclef.demo_data)."""

import json
import logging
from pathlib import Path

from birdclef.demo_data import generate
from birdclef.logs import run_logged
from birdclef.settings import DemoConfig


def main(smk) -> None:
    cfg = DemoConfig.from_dict(smk.params.demo)
    out_dir = Path(smk.output.train_csv).parent
    summary = generate(out_dir, cfg, workers=smk.threads)
    logging.getLogger("demo_data").info("wrote %s: %s", out_dir, json.dumps(summary))


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
