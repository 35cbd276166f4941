# Stage 11: results/bundle/, everything a Kaggle notebook needs offline; the infer rule runs it.


rule fetch_wheels:
    output:
        directory("results/bundle_wheels"),
    log:
        "results/logs/fetch_wheels.log",
    benchmark:
        "results/benchmarks/fetch_wheels.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        inputs=BUNDLE_INPUTS,
        python_version=config["bundle"]["python_version"],
        versions=installed_versions(["openvino", "ai-edge-litert"]),
    script:
        "../workflow_scripts/fetch_wheels.py"


rule bundle:
    input:
        exported=exported_members,
        weights="results/ensemble/weights.json",
        taxonomy=f"{DATA_DIR}/taxonomy.csv",
        clips="results/dedup/clips.parquet",
        wheels=["results/bundle_wheels"] if config["bundle"]["wheels"] else [],
        timing=bundle_timing_inputs,
    output:
        directory("results/bundle"),
    log:
        "results/logs/bundle.log",
    benchmark:
        "results/benchmarks/bundle.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        bundle=config["bundle"],
        mel=config["mel"],
        chunks=config["chunks"],
        embeddings=config["embeddings"],
        postprocess=config["postprocess"],
        batch_size=config["export"]["batch_size"],
        fallback_seconds=config["infer"]["fallback_seconds"],
    script:
        "../workflow_scripts/build_bundle.py"
