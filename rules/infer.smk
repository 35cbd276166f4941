# Stage 11: the test soundscapes through the bundle's predict.py into results/submission.csv, and its score.


rule infer:
    input:
        audio=test_audio_inputs,
        sample_submission=sample_submission_input,
        bundle="results/bundle",
    output:
        submission="results/submission.csv",
        rejected="results/infer/rejected.csv",
    log:
        "results/logs/infer.log",
    benchmark:
        "results/benchmarks/infer.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=90,
    params:
        infer=config["infer"],
    script:
        "../workflow_scripts/run_infer.py"


rule score:
    input:
        submission="results/submission.csv",
        solution=f"{DATA_DIR}/{config['infer']['solution']}",
    output:
        "results/score.json",
    log:
        "results/logs/score.log",
    benchmark:
        "results/benchmarks/score.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/score_submission.py"
