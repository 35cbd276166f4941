# Stage 7: soft labels for the unlabelled soundscapes, from the teachers and BirdNET (its
# logits, cached with its embeddings); one job per round (round n's students are round
# n+1's teachers), reading round n's own settings (pseudo_label.per_round). A teacher that
# trained on soundscape windows labels each soundscape fold with the fold model that held it out.


rule pseudo_label:
    input:
        windows=expand("results/mels/soundscapes/{shard}.parquet", shard=MEL_SOUNDSCAPE_SHARDS),
        models=pseudo_teacher_models,
        embeddings=pseudo_embedding_inputs,
        taxonomy=f"{DATA_DIR}/taxonomy.csv",
    output:
        labels="results/pseudo/round{round}/labels.parquet",
        plot=report(
            "results/pseudo/round{round}/pseudo_labels.png",
            caption="../report/pseudo_labels.rst",
            category="Pseudo-labels",
        ),
    log:
        "results/logs/pseudo_label/round{round}.log",
    benchmark:
        "results/benchmarks/pseudo_label/round{round}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,  # asked of a cluster; a local run uses CUDA when present, else the CPU
    params:
        pseudo=lambda w: PLAN.pseudo_params(int(w.round)),
        teachers=lambda w: round_teachers(int(w.round))[1],
        teacher_stage=lambda w: round_teachers(int(w.round))[0],
        teacher_weights=lambda w: round_teacher_weights(int(w.round)),
        out_of_fold=out_of_fold_teachers,
        n_folds=len(PLAN.folds),
        birdnet=config["birdnet"],
        mel=config["mel"],
    script:
        "../workflow_scripts/run_pseudo_label.py"
