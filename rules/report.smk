# The per-rule runtimes, read from every rule's benchmark: file once the rest of the DAG is built.


rule runtimes:
    input:
        final_outputs(),
    output:
        table="results/runtimes.csv",
        plot=report(
            "results/runtimes.png",
            caption="../report/runtimes.rst",
            category="Runtimes",
        ),
    log:
        "results/logs/runtimes.log",
    benchmark:
        "results/benchmarks/runtimes.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        benchmarks="results/benchmarks",
    script:
        "../workflow_scripts/summarize_runtimes.py"
