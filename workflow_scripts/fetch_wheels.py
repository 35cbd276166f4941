"""Rule fetch_wheels: the wheels the bundle's predict.py needs beyond numpy, scipy and soundfile."""

import logging

from birdclef.bundle import fetch_wheels, runtime_requirements
from birdclef.logs import run_logged

log = logging.getLogger("fetch_wheels")


def main(smk) -> None:
    requirements = runtime_requirements(smk.params.inputs)
    wheels = fetch_wheels(requirements, smk.output[0], smk.params.python_version)
    log.info("%s: %d wheels: %s", ", ".join(requirements), len(wheels), ", ".join(wheels))


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
