# Stage 10: OpenVINO IRs of every member with a weight, FP32 and NNCF INT8, and the gate between them.


rule export_int8:
    input:
        models=model_folds,
        calibration=expand("results/mels/soundscapes/{shard}.parquet", shard=MEL_SOUNDSCAPE_SHARDS),
        # Built validation soundscapes: the fold-mean IR has seen most of their clips; the gate
        # compares FP32 with INT8 on them, it does not score the model (see export_eval_inputs).
        windows=export_eval_inputs,
        calibration_embeddings=model_window_inputs("soundscapes"),
        window_embeddings=export_eval_embeddings,
        solution=[VALIDATION_SOLUTION] if HAS_VALIDATION else [],
    output:
        fp32_xml="results/export/{stage}/{model}/fp32.xml",
        fp32_bin="results/export/{stage}/{model}/fp32.bin",
        int8_xml="results/export/{stage}/{model}/int8.xml",
        int8_bin="results/export/{stage}/{model}/int8.bin",
        quant="results/export/{stage}/{model}/quant.json",
    log:
        "results/logs/export_int8/{stage}/{model}.log",
    benchmark:
        "results/benchmarks/export_int8/{stage}/{model}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        export=config["export"],
        mel=config["mel"],
        validation_source=VALIDATION_SOURCE,
    script:
        "../workflow_scripts/export_member.py"


rule export_summary:
    input:
        quant=exported_quant_reports,
    output:
        table="results/export/summary.csv",
        plot=report(
            "results/export/summary.png",
            caption="../report/export.rst",
            category="Export",
        ),
    log:
        "results/logs/export_summary.log",
    benchmark:
        "results/benchmarks/export_summary.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/summarize_exports.py"
