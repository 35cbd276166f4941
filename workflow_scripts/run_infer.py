"""Rule infer: the test soundscapes through the bundle's own predict.py into submission.csv.

predict.py is loaded from results/bundle/ and its ``run`` is called: the workflow's
submission and a Kaggle notebook's are one computation.
"""

import importlib.util
import logging
import sys
from pathlib import Path

from birdclef.layout import audio_inputs
from birdclef.logs import run_logged

log = logging.getLogger("infer")


def load_predict(bundle_dir: str | Path):
    """The bundle's predict.py as a module."""
    spec = importlib.util.spec_from_file_location("bundle_predict_script", Path(bundle_dir) / "predict.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main(smk) -> None:
    predict = load_predict(smk.input.bundle)
    sample = smk.input.sample_submission[0] if smk.input.sample_submission else None
    if sample is None:
        log.info("no %s: columns are row_id and the models' classes", smk.params.infer["sample_submission"])
    files = audio_inputs(smk.input.audio)
    summary = predict.run(
        smk.input.bundle, files, sample, smk.output.submission, smk.threads, rejected_out=smk.output.rejected
    )
    log.info("%s", summary)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
