"""Rule export_int8: one member to OpenVINO FP32 and INT8 IRs, and the accuracy gate that chooses between them."""

import logging
from pathlib import Path

import pandas as pd

from birdclef.export import export_member, labelled_windows, sample_windows
from birdclef.logs import run_logged
from birdclef.settings import MelConfig
from birdclef.tables import write_json

log = logging.getLogger("export_int8")
# The fold-mean IR is judged on windows whose clips most of its folds trained on, except on
# given validation soundscapes: a fair comparison of FP32 with INT8, not a score of the model.
JUDGED_ON = {
    "given": "validation soundscapes",
    "built": "built validation soundscapes (held-out clips of every fold, seen by the fold-mean's other folds)",
    "none": "training chunks (seen in training)",
}


def main(smk) -> None:
    cfg, mel = smk.params.export, MelConfig.from_dict(smk.params.mel)
    calibration = sample_windows(
        smk.input.calibration, mel, cfg["calibration_windows"], seed=0, embedding_paths=smk.input.calibration_embeddings
    )
    solution = pd.read_csv(smk.input.solution[0]) if smk.input.solution else None
    windows, labels = labelled_windows(smk.input.windows, mel, solution, embedding_paths=smk.input.window_embeddings)
    log.info(
        "%s/%s: %d folds, %d calibration windows, judged on %d %s windows",
        smk.wildcards.stage,
        smk.wildcards.model,
        len(smk.input.models),
        len(calibration),
        len(windows),
        "validation" if solution is not None else "training",
    )
    quant = export_member(
        smk.input.models,
        calibration,
        windows,
        labels,
        Path(smk.output.quant).parent,
        tolerance=cfg["tolerance"],
        subset_size=cfg["calibration_windows"],
        threads=smk.threads,
        batch_size=cfg["batch_size"],
    )
    quant["judged_on"] = JUDGED_ON[smk.params.validation_source] if solution is not None else JUDGED_ON["none"]
    log.info("scores %s; windows/s %s", quant["scores"], quant["windows_per_s"])
    log.info("chose %s: %s", quant["choice"], quant["reason"])
    write_json(quant, smk.output.quant)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
