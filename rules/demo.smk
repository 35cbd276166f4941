# The synthetic demo dataset, in the Kaggle BirdCLEF layout.


rule demo_data:
    output:
        train_csv=f"{DEMO_DIR}/train.csv",
        taxonomy=f"{DEMO_DIR}/taxonomy.csv",
        sample_submission=f"{DEMO_DIR}/sample_submission.csv",
        solution=f"{DEMO_DIR}/solution.csv",
        validation_solution=f"{DEMO_DIR}/validation_solution.csv",
        duplicates_truth=f"{DEMO_DIR}/duplicates_truth.csv",
        messy_truth=f"{DEMO_DIR}/messy_truth.csv",
        train_audio=directory(f"{DEMO_DIR}/train_audio"),
        train_soundscapes=directory(f"{DEMO_DIR}/train_soundscapes"),
        test_soundscapes=directory(f"{DEMO_DIR}/test_soundscapes"),
        validation_soundscapes=directory(f"{DEMO_DIR}/validation_soundscapes"),
    log:
        "results/logs/demo_data.log",
    benchmark:
        "results/benchmarks/demo_data.tsv"
    conda:
        "../envs/audio.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        demo=config["demo"],
    script:
        "../workflow_scripts/make_demo_data.py"
