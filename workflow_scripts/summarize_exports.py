"""Rule export_summary: every exported member's gate (quant.json) in one table and one figure."""

import json
import logging
from pathlib import Path

import pandas as pd

from birdclef.layout import member_of
from birdclef.logs import run_logged
from birdclef.plots import plot_export
from birdclef.tables import write_csv

log = logging.getLogger("export_summary")


def main(smk) -> None:
    quant = {member_of(p): json.loads(Path(p).read_text()) for p in smk.input.quant}
    rows = []
    for member, q in quant.items():
        row = {"member": member, "choice": q["choice"], "calibration_windows": q["calibration_windows"]}
        row |= {f"score_{k}": v for k, v in q["scores"].items()}
        row |= {f"windows_per_s_{k}": v for k, v in q["windows_per_s"].items()}
        rows.append(row)
        log.info("%s: %s (%s)", member, q["choice"].upper(), q["reason"])
    write_csv(pd.DataFrame(rows), smk.output.table, index=False)
    plot_export(quant, smk.output.plot)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
