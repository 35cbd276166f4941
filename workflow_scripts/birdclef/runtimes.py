"""Per-job runtimes from the ``benchmark:`` files that every rule writes under results/benchmarks/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from birdclef.layout import round_of

RUNTIME_COLUMNS = ["rule", "job", "seconds", "cpu_seconds", "max_rss_mb"]


def read_benchmarks(root: str | Path) -> pd.DataFrame:
    """One row per benchmark file: the rule (first folder or file name), the job (its path), the mean over repeats.

    Snakemake writes ``-`` where it could not measure a value; those become NaN.
    """
    root = Path(root)
    rows = []
    for tsv in sorted(root.rglob("*.tsv")):
        job = tsv.relative_to(root).with_suffix("").as_posix()
        table = pd.read_csv(tsv, sep="\t").apply(pd.to_numeric, errors="coerce")
        rows.append(
            {
                "rule": job.split("/")[0],
                "job": job,
                "seconds": table["s"].mean(),
                "cpu_seconds": table["cpu_time"].mean() if "cpu_time" in table else float("nan"),
                "max_rss_mb": table["max_rss"].mean() if "max_rss" in table else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=RUNTIME_COLUMNS)


def per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule (index, slowest total first): its jobs' summed wall seconds, its slowest job, its number of jobs."""
    return (
        jobs.groupby("rule")["seconds"]
        .agg(total="sum", slowest="max", jobs="size")
        .sort_values("total", ascending=False)
    )


def round_of_job(job: str) -> str | None:
    """The self-training step a job belongs to: "teachers", "round <n>" (its pseudo_label and students), or None.

    ``job``: a benchmark path as ``read_benchmarks`` gives it (``train_student/student2/m/fold0``, ...).
    """
    parts = job.split("/")
    if parts[0] == "train_teacher":
        return "teachers"
    if parts[0] == "pseudo_label" and len(parts) > 1 and parts[1].startswith("round"):
        return f"round {int(parts[1][len('round') :])}"
    if parts[0] == "train_student" and len(parts) > 1:
        return f"round {round_of(parts[1])}"
    return None


def per_round(jobs: pd.DataFrame) -> pd.DataFrame:
    """Job seconds of the teachers and of each pseudo-label round (its labels and its students), in order."""
    steps = jobs["job"].map(round_of_job)
    table = jobs.assign(step=steps).dropna(subset=["step"]).groupby("step")["seconds"].agg(total="sum", jobs="size")
    order = sorted(table.index, key=lambda s: -1 if s == "teachers" else int(s.split()[1]))
    return table.reindex(order)
