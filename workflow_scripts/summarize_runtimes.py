"""Rule runtimes: every job's wall time, CPU time and peak memory from the benchmark files, as a table and a figure."""

import logging

from birdclef.logs import run_logged
from birdclef.plots import plot_runtimes
from birdclef.runtimes import per_rule, read_benchmarks
from birdclef.tables import write_csv

log = logging.getLogger("runtimes")


def main(smk) -> None:
    jobs = read_benchmarks(smk.params.benchmarks)
    jobs = jobs[jobs["rule"] != "runtimes"]  # this rule's own file is from the run before, if any
    write_csv(jobs, smk.output.table, index=False)
    for rule, row in per_rule(jobs).iterrows():
        log.info("%-28s %8.1f s in %3d job(s), slowest %.1f s", rule, row["total"], row["jobs"], row["slowest"])
    plot_runtimes(jobs, smk.output.plot)


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
