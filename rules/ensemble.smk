# Stage 9: ensemble weights. A checkpoint: which members get exported and run depends on them.


checkpoint fit_ensemble:
    input:
        predictions=ensemble_inputs,
        solution=[VALIDATION_SOLUTION] if HAS_VALIDATION else [],
    output:
        weights="results/ensemble/weights.json",
        plot=report(
            "results/ensemble/ensemble.png",
            caption="../report/ensemble.rst",
            category="Ensemble",
        ),
        per_class=report(
            "results/ensemble/per_class.png",
            caption="../report/ensemble_per_class.rst",
            category="Ensemble",
        ),
    log:
        "results/logs/fit_ensemble.log",
    benchmark:
        "results/benchmarks/fit_ensemble.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        ensemble=config["ensemble"],
        members=ENSEMBLE_MEMBERS,
        on_validation=HAS_VALIDATION,
    script:
        "../workflow_scripts/fit_ensemble.py"
