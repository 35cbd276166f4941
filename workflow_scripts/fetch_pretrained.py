"""Rule pretrained_weights: fetch one model's hf-hub: weights into the Hugging Face cache and record the revision."""

from birdclef.logs import run_logged
from birdclef.pretrained import fetch_hub_weights
from birdclef.tables import write_json


def main(smk) -> None:
    key = f"models.{smk.wildcards.model}.pretrained"
    write_json(fetch_hub_weights(smk.params.name, smk.params.backbone, key=key), smk.output.record)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
