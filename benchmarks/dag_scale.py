"""Snakemake's planning at Kaggle BirdCLEF 2025 size: seconds and peak memory of ``snakemake -n``.

    .venv/bin/python benchmarks/dag_scale.py [--fractions 0.125,0.25,0.5,1] [--repeats 3]
        [--states fresh,manifest,dedup,ensemble] [--out dag_scale.csv] [--workdir DIR] [--keep]
    .venv/bin/python benchmarks/dag_scale.py --finished-demo . --repeats 5   # after make demo

At each size fraction f of Kaggle BirdCLEF 2025 (206 classes, 28,000 files under
train_audio/<label>/, 10,000 under train_soundscapes/), it lays out a data folder of
empty .ogg files (a dry-run only lists and stats them: the run checks this with strace)
plus train.csv, taxonomy.csv, sample_submission.csv and a few test soundscapes, and
times this repository's Snakefile with ``-n`` on it: configs/nips4b.yaml layered with
Kaggle-scale shards (32 BirdNET shards, 32 training and 16 soundscape mel shards,
5 folds).

Snakemake reads a checkpoint's output (so runs the input functions of rules/common.smk
on it) only when it counts the checkpoint as done: its job need not run and every file
it declares exists. A job needs to run when a job it depends on does, so no single
dry-run can both plan the jobs before a checkpoint and read that checkpoint's output.
The benchmark therefore times four states of one results folder, each left as a run that
finished the stages before it would leave it: their outputs written (the checkpoints'
tables with every row and the columns common.smk reads, other files empty), then
``snakemake --touch`` over them, which dates them in the DAG's order and records each
job's metadata (params, input list, code), so that the dry-runs also pay for the rerun
triggers as after a real run:

- fresh:    data only. Plans everything but export_int8; no checkpoint read.
- manifest: the manifest done. Its rows give each BirdNET shard its audio files.
- dedup:    up to dedup done. Each mel shard gets its clips; every fold job is planned.
- ensemble: up to fit_ensemble done. Every checkpoint is read and every job is in the
            DAG; the export_int8 jobs, export_summary and infer are planned.

Together the states plan every rule, and the run stops when one plans other jobs than
its state should (a state that is not what it claims would time a smaller DAG). For
each fraction and state it prints the median wall seconds of --repeats dry-runs and the
peak resident memory (GNU time; else the child's ru_maxrss), the seconds of the --touch
run that recorded the state (a run's scheduling over those stages, no job started),
then Snakemake's own floor (-n of a one-rule Snakefile), the CPU, and how busy other
processes kept the machine. Self-check: --fractions 0.005 --repeats 1 [--shards 4,4,2].
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from machine import busy_cpu_seconds, cpu_line, own_cpu_seconds

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
GNU_TIME = Path("/usr/bin/time")

# Kaggle BirdCLEF 2025.
FULL_CLASSES = 206
FULL_TRAIN_FILES = 28_000
FULL_SOUNDSCAPES = 10_000
TEST_SOUNDSCAPES = 4  # the public test_soundscapes/ holds almost nothing; the hidden one is not ours
SOUNDSCAPE_WINDOWS = 12  # 60 s soundscapes, 5 s windows

# Layered over config.yaml and configs/nips4b.yaml: the real-data recipe at Kaggle scale.
OVERRIDES = {
    "data_dir": "data",
    "birdnet": {"n_shards": 32},
    "mel_shards": {"n_train_shards": 32, "n_soundscape_shards": 16},
    "folds": {"n_folds": 5},
    "pseudo_label": {"rounds": 1, "per_round": []},  # the states lay out one round's outputs
}
BASE_CONFIGS = [REPO / "config.yaml", REPO / "configs" / "nips4b.yaml"]

STATES = ["fresh", "manifest", "dedup", "ensemble"]
SHIFT_NS = 3600 * 10**9  # how far ahead outputs are dated between the touch runs
STATE_TARGET = {"manifest": "manifest", "dedup": "dedup", "ensemble": "fit_ensemble"}  # the rule a state ends at
# The rules each state must plan, and those it must not (their outputs stand as done).
MUST_PLAN = {
    "fresh": {"manifest", "birdnet_scan", "quality_filter", "dedup", "mel_train_shard", "train_teacher", "infer"},
    "manifest": {"birdnet_scan", "quality_filter", "dedup", "mel_train_shard", "train_teacher", "infer"},
    "dedup": {"mel_train_shard", "mel_soundscape_shard", "folds", "train_teacher", "pseudo_label"}
    | {"screen_backgrounds", "build_validation", "mel_validation_shard", "predict_validation", "train_student"}
    | {"fit_ensemble", "infer"},
    "ensemble": {"export_int8", "export_summary", "infer"},
}
_UP_TO_DEDUP = {"manifest", "birdnet_scan", "quality_filter", "dedup"}
MUST_NOT_PLAN = {
    "fresh": {"export_int8"},
    "manifest": {"manifest", "export_int8"},
    "dedup": _UP_TO_DEDUP | {"export_int8"},
    "ensemble": _UP_TO_DEDUP
    | {"mel_train_shard", "mel_soundscape_shard", "embed_shard", "folds", "train_teacher"}
    | {"screen_backgrounds", "build_validation", "mel_validation_shard", "predict_validation"}
    | {"pseudo_label", "train_student", "fit_ensemble"},
}

CSV_COLUMNS = ["fraction", "state", "train_files", "soundscapes", "jobs", "median_s", "peak_mb", "cpu_s"]
CSV_COLUMNS += ["touch_s", "jobs_per_rule"]
FLOOR_SNAKEFILE = 'rule all:\n    output:\n        "done.txt"\n    shell:\n        "touch {output}"\n'


# --- The data folder -----------------------------------------------------------------
@dataclass
class Layout:
    work: Path
    fraction: float
    classes: list[str]
    train_files: list[str]  # relative to data/train_audio
    soundscapes: list[str]  # relative to data/train_soundscapes
    config: dict  # the merged config the workflow sees
    seconds: float = 0.0
    recorded: str = "fresh"  # the state the results folder is in
    outputs: list[str] = field(default_factory=list)  # the outputs written so far


def counts(fraction: float) -> tuple[int, int]:
    """Training files and soundscapes at ``fraction`` of Kaggle 2025."""
    return max(1, round(FULL_TRAIN_FILES * fraction)), max(1, round(FULL_SOUNDSCAPES * fraction))


def merged_config(overrides: dict) -> dict:
    """config.yaml, configs/nips4b.yaml and ``overrides``, merged as Snakemake merges --configfile."""

    def merge(base: dict, new: dict) -> dict:
        out = dict(base)
        for key, value in new.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    config: dict = {}
    for path in BASE_CONFIGS:
        config = merge(config, yaml.safe_load(path.read_text()))
    return merge(config, overrides)


def empty_files(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def lay_out(work: Path, fraction: float, overrides: dict = OVERRIDES) -> Layout:
    """A Kaggle-2025-shaped data folder at ``fraction`` of its size under ``work/data``, and the config file."""
    t0 = time.perf_counter()
    n_train, n_soundscapes = counts(fraction)
    data = work / "data"
    classes = [f"sp{i:03d}" for i in range(FULL_CLASSES)]
    # Kaggle names: train_audio/<label>/XC<id>.ogg (some iNat ids), soundscapes <site>_<date>_<time>.ogg.
    labels = [classes[k % FULL_CLASSES] for k in range(n_train)]
    train_files = [f"{label}/XC{100_000 + k}.ogg" for k, label in enumerate(labels)]
    soundscapes = [f"H{k % 20:02d}_2023{(k // 20) % 12 + 1:02d}01_{k:06d}.ogg" for k in range(n_soundscapes)]
    tests = [f"soundscape_{k:05d}.ogg" for k in range(TEST_SOUNDSCAPES)]
    empty_files(data / "train_audio", train_files)
    empty_files(data / "train_soundscapes", soundscapes)
    empty_files(data / "test_soundscapes", tests)

    taxonomy = {
        "primary_label": classes,
        "inat_taxon_id": [1_000_000 + i for i in range(FULL_CLASSES)],
        "scientific_name": [f"Avis species{i}" for i in range(FULL_CLASSES)],
        "common_name": [f"Bird {i}" for i in range(FULL_CLASSES)],
        "class_name": ["Aves"] * FULL_CLASSES,
    }
    write_csv(data / "taxonomy.csv", taxonomy)
    write_csv(
        data / "train.csv",
        {
            "primary_label": labels,
            "secondary_labels": [
                f"['{classes[(k + 7) % FULL_CLASSES]}']" if k % 10 == 0 else "[]" for k in range(n_train)
            ],
            "type": ["['song']"] * n_train,
            "filename": train_files,
            "collection": ["XC"] * n_train,
            "rating": [float(k % 6) for k in range(n_train)],
            "url": [f"https://xeno-canto.org/{100_000 + k}" for k in range(n_train)],
            "latitude": [4.5 + (k % 100) / 100 for k in range(n_train)],
            "longitude": [-73.5 - (k % 100) / 100 for k in range(n_train)],
            "scientific_name": [f"Avis species{classes.index(label)}" for label in labels],
            "common_name": [f"Bird {classes.index(label)}" for label in labels],
            "author": [f"Recordist {k % 997}" for k in range(n_train)],
            "license": ["cc-by-nc-sa 4.0"] * n_train,
        },
    )
    rows = [f"{Path(t).stem}_{5 * (w + 1)}" for t in tests for w in range(SOUNDSCAPE_WINDOWS)]
    write_csv(data / "sample_submission.csv", {"row_id": rows, **{c: [1 / FULL_CLASSES] * len(rows) for c in classes}})

    (work / "bench.yaml").write_text(yaml.safe_dump(overrides, sort_keys=False))
    layout = Layout(work, fraction, classes, train_files, soundscapes, merged_config(overrides))
    layout.seconds = time.perf_counter() - t0
    return layout


def write_csv(path: Path, columns: dict[str, list]) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(columns)
        out.writerows(zip(*columns.values(), strict=True))


# --- What a finished run leaves before each state ---------------------------------------
def shard_names(n: int) -> list[str]:
    return [f"shard-{i:03d}" for i in range(n)]


def members(config: dict) -> list[str]:
    stage = "student" if config["pseudo_label"]["rounds"] == 1 else f"student{config['pseudo_label']['rounds']}"
    return [f"teacher/{m}" for m in config["teachers"]] + [f"{stage}/{m}" for m in config["students"]]


def stage_outputs(layout: Layout) -> list[tuple[str, str, list[str]]]:
    """(state that completes it, rule, its outputs) of every rule before export, in the order a run goes.

    These are the rules of a config without validation soundscapes and with one pseudo-label round:
    Kaggle's data has no validation_soundscapes/ (so build_validation builds them from the held-out
    clips; a path ending in / is its folder output), and the recipe runs one round.
    """
    cfg = layout.config
    assert cfg["pseudo_label"]["rounds"] == 1, "only one pseudo-label round is laid out"
    folds = range(cfg["folds"]["n_folds"])
    birdnet = shard_names(cfg["birdnet"]["n_shards"])
    mel_train = shard_names(cfg["mel_shards"]["n_train_shards"])
    mel_sound = shard_names(cfg["mel_shards"]["n_soundscape_shards"])

    def fold_files(stage: str, models: list[str]) -> list[str]:
        names = ["model.pt", "oof.parquet", "history.csv", "metrics.json"]
        return [f"results/models/{stage}/{m}/fold{k}/{n}" for m in models for k in folds for n in names]

    built = ["soundscapes/", "validation_solution.csv", "soundscape_folds.csv", "slots.csv", "background_slots.csv"]
    built += ["example.png"]
    predicted = [("teacher", m) for m in cfg["teachers"]] + [("student", m) for m in cfg["students"]]

    return [
        ("manifest", "manifest", [f"results/manifest/{n}" for n in ("clips.parquet", "rejected.csv", "summary.png")]),
        ("dedup", "birdnet_scan", [f"results/birdnet/{s}{x}" for s in birdnet for x in (".parquet", ".clips.parquet")]),
        ("dedup", "quality_filter", ["results/filter/clips.parquet", "results/filter/quality_filter.png"]),
        (
            "dedup",
            "dedup",
            ["results/dedup/clips.parquet", "results/dedup/duplicates.csv", "results/dedup/duplicates.png"],
        ),
        ("ensemble", "mel_train_shard", [f"results/mels/train/{s}.parquet" for s in mel_train]),
        ("ensemble", "mel_soundscape_shard", [f"results/mels/soundscapes/{s}.parquet" for s in mel_sound]),
        *[
            ("ensemble", "embed_shard", [f"results/embeddings/{kind}/{s}.parquet" for s in shards])
            for kind, shards in (("train", mel_train), ("soundscapes", mel_sound))
        ],
        ("ensemble", "folds", ["results/folds.csv"]),
        ("ensemble", "train_teacher", fold_files("teacher", cfg["teachers"])),
        ("ensemble", "screen_backgrounds", ["results/validation/background_windows.csv"]),
        ("ensemble", "build_validation", [f"results/validation/{n}" for n in built]),
        ("ensemble", "mel_validation_shard", [f"results/mels/validation/{s}.parquet" for s in mel_sound]),
        ("ensemble", "embed_shard", [f"results/embeddings/validation/{s}.parquet" for s in mel_sound]),
        (
            "ensemble",
            "pseudo_label",
            ["results/pseudo/round1/labels.parquet", "results/pseudo/round1/pseudo_labels.png"],
        ),
        ("ensemble", "train_student", fold_files("student", cfg["students"])),
        (
            "ensemble",
            "predict_validation",
            [f"results/predictions/{stage}/{m}/validation.parquet" for stage, m in predicted],
        ),
        (
            "ensemble",
            "fit_ensemble",
            [f"results/ensemble/{n}" for n in ("weights.json", "ensemble.png", "per_class.png")],
        ),
    ]


def manifest_table(layout: Layout) -> pa.Table:
    """results/manifest/clips.parquet: one row per training file, in write_manifest's schema."""
    n = len(layout.train_files)
    return pa.table(
        {
            "clip_id": [f.removesuffix(".ogg") for f in layout.train_files],
            "filename": layout.train_files,
            "path": [f"data/train_audio/{f}" for f in layout.train_files],
            "primary_label": [f.split("/")[0] for f in layout.train_files],
            "secondary_labels": pa.array([[] for _ in range(n)], pa.list_(pa.string())),
            "author": [f"Recordist {k % 997}" for k in range(n)],
            "duration_s": [5.0 + (k % 55) for k in range(n)],
            "sample_rate": pa.array([32_000] * n, pa.int32()),
            "channels": pa.array([1] * n, pa.int16()),
            "frames": pa.array([32_000 * (5 + k % 55) for k in range(n)], pa.int64()),
            "latitude": [4.5] * n,
            "longitude": [-73.5] * n,
            "rating": [4.0] * n,
        }
    )


def dedup_table(layout: Layout) -> pa.Table:
    """results/dedup/clips.parquet: the manifest's rows with the filter's and dedup's columns, every clip kept."""
    table = manifest_table(layout)
    n = table.num_rows
    extra = {
        "best_windows": pa.array([[0.0, 5.0, 10.0]] * n, pa.list_(pa.float64())),
        "birdnet_secondary": pa.array([[] for _ in range(n)], pa.list_(pa.string())),
        "birdnet_knows_species": [True] * n,
        "quality_keep": [True] * n,
        "quality_reason": ["kept: own species confident"] * n,
        "dedup_keep": [True] * n,
        "keep": [True] * n,
    }
    for name, column in extra.items():
        table = table.append_column(name, pa.array(column) if isinstance(column, list) else column)
    return table


def write_state(layout: Layout, state: str) -> float:
    """Leave the results folder as a run that finished the stages up to ``state`` would; returns seconds taken.

    The outputs of the stages not yet recorded are written (the checkpoints' tables in full, other
    files empty); then ``snakemake --touch``, with those stages' rules forced, runs up to ``state``'s
    rule: it touches the outputs job by job in the DAG's order, reads each checkpoint as it passes
    it, and records each job's metadata (params, input list, code) as a real run does, so the timed
    dry-runs also pay for the rerun triggers. Last, every output moves an hour ahead, order kept:
    newer than any rule's script someone may edit while the benchmark runs (Snakemake's code trigger
    would make that stage stale); the next call moves them back before it touches anything.
    """
    if STATES.index(state) <= STATES.index(layout.recorded):
        return 0.0
    t0 = time.perf_counter()
    shift_outputs(layout, -SHIFT_NS)
    todo = STATES[STATES.index(layout.recorded) + 1 : STATES.index(state) + 1]
    new = [(rule, paths) for stage, rule, paths in stage_outputs(layout) if stage in todo]
    for _, paths in new:
        for rel in paths:
            path = layout.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if rel.endswith("/"):  # a folder output
                path.mkdir(exist_ok=True)
            elif rel == "results/manifest/clips.parquet":
                pq.write_table(manifest_table(layout), path, compression="zstd")
            elif rel == "results/dedup/clips.parquet":
                pq.write_table(dedup_table(layout), path, compression="zstd")
            elif rel == "results/ensemble/weights.json":
                weights = {m: {"weight": 1 / len(members(layout.config))} for m in members(layout.config)}
                path.write_text(json.dumps({"members": weights}))
            else:
                path.touch()
    rules = [rule for rule, _ in new]
    cmd = workflow_cmd(layout, "--touch", STATE_TARGET[state], "--forcerun", *rules, dry_run=False)
    proc = subprocess.run(cmd, cwd=layout.work, capture_output=True, text=True, env=run_env())
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "not touched" in out:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}")
    layout.recorded = state
    layout.outputs += [rel for _, paths in new for rel in paths]
    shift_outputs(layout, SHIFT_NS)
    return time.perf_counter() - t0


def shift_outputs(layout: Layout, ns: int) -> None:
    for rel in layout.outputs:
        mtime = (layout.work / rel).stat().st_mtime_ns + ns
        os.utime(layout.work / rel, ns=(mtime, mtime))


# --- Running Snakemake ---------------------------------------------------------------------
@dataclass
class Run:
    seconds: float
    peak_mb: float | None
    cpu_s: float | None
    jobs: dict[str, int] = field(default_factory=dict)


def snakemake_cmd(work: Path, snakefile: Path, *args: str, dry_run: bool = True) -> list[str]:
    cmd = [str(SNAKEMAKE), *(["-n"] if dry_run else []), "--quiet", "rules", "--cores", "2"]
    return [*cmd, "--snakefile", str(snakefile), "--directory", str(work), *args]


def workflow_cmd(layout: Layout, *args: str, dry_run: bool = True) -> list[str]:
    """This repository's workflow on ``layout``; ``args`` (targets among them) go before --configfile."""
    configs = [str(REPO / "configs" / "nips4b.yaml"), str(layout.work / "bench.yaml")]
    return snakemake_cmd(layout.work, REPO / "Snakefile", *args, "--configfile", *configs, dry_run=dry_run)


def run_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def timed(cmd: list[str], cwd: Path) -> tuple[Run, str]:
    """Wall seconds, peak RSS (MB) and CPU seconds of one fresh Snakemake process, and its output."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        if GNU_TIME.is_file():
            full = [str(GNU_TIME), "-v", "-o", report.name, *cmd]
        else:  # the child's ru_maxrss, measured in a fresh Python process per run
            probe = (
                "import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
                "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
                "open(sys.argv[1], 'w').write(f'Maximum resident set size (kbytes): {r.ru_maxrss}\\n"
                "User time (seconds): {r.ru_utime}\\nSystem time (seconds): {r.ru_stime}\\n'); sys.exit(rc)"
            )
            full = [sys.executable, "-c", probe, report.name, *cmd]
        t0 = time.perf_counter()
        proc = subprocess.run(full, cwd=cwd, capture_output=True, text=True, env=run_env())
        seconds = time.perf_counter() - t0
        usage = report.read()
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}")

    def field_of(name: str) -> float | None:
        match = re.search(rf"{re.escape(name)}: ([\d.]+)", usage)
        return float(match.group(1)) if match else None

    rss_kb, user, system = (
        field_of(k) for k in ("Maximum resident set size (kbytes)", "User time (seconds)", "System time (seconds)")
    )
    cpu = user + system if user is not None and system is not None else None
    return Run(seconds, rss_kb / 1024 if rss_kb else None, cpu, planned_jobs(out)), out


def planned_jobs(out: str) -> dict[str, int]:
    """Rule -> jobs, from the 'Job stats' table a dry-run prints (empty when there is nothing to do)."""
    if "Job stats:" not in out:
        return {}
    jobs = {}
    for line in out.split("Job stats:")[1].split("\n")[3:]:  # past the header, its rule and "job count"
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def check_plan(state: str, jobs: dict[str, int], config: dict) -> None:
    """Fail when a state plans other jobs than it should: then its checkpoints were not read, or not all."""
    missing = MUST_PLAN[state] - set(jobs)
    extra = MUST_NOT_PLAN[state] & set(jobs)
    n_folds = config["folds"]["n_folds"]
    expected = {
        "birdnet_scan": config["birdnet"]["n_shards"],
        "mel_train_shard": config["mel_shards"]["n_train_shards"],
        "mel_soundscape_shard": config["mel_shards"]["n_soundscape_shards"],
        "train_teacher": len(config["teachers"]) * n_folds,
        "train_student": len(config["students"]) * n_folds,
        "export_int8": len(members(config)),
    }
    wrong = {r: (jobs[r], n) for r, n in expected.items() if r in jobs and jobs[r] != n}
    if missing or extra or wrong:
        raise AssertionError(
            f"state {state}: the dry-run planned {jobs}; missing rules {sorted(missing)}, "
            f"rules that should stand as done {sorted(extra)}, wrong job counts (planned, expected) {wrong}"
        )


def audio_opened(cmd: list[str], cwd: Path) -> tuple[int, str]:
    """How many .ogg files the dry-run opens (or tries to), and how that was seen: strace, else an audit hook."""
    strace = shutil.which("strace")
    with tempfile.NamedTemporaryFile("r", suffix=".trace") as trace:
        if strace:
            full = [strace, "-f", "--seccomp-bpf", "-qq", "-e", "trace=open,openat,openat2", "-o", trace.name, *cmd]
            how = "strace, every open(2) of the process tree"
        else:
            hook = (
                "import sys; log = open(sys.argv[1], 'w'); "
                "sys.addaudithook(lambda ev, a: ev == 'open' and str(a[0]).endswith('.ogg') "
                "and log.write(f'open(\"{a[0]}\")\\n') and log.flush()); "
                "sys.argv = sys.argv[2:]; from snakemake.cli import main; sys.exit(main())"
            )
            full = [sys.executable, "-c", hook, trace.name, *cmd]
            how = "a Python audit hook (Python-level opens only: strace not found)"
        proc = subprocess.run(full, cwd=cwd, capture_output=True, text=True, env=run_env())
        if proc.returncode != 0:
            raise RuntimeError(f"traced dry-run failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
        opens = [line for line in trace.read().splitlines() if re.search(r'\.ogg"', line) and "O_DIRECTORY" not in line]
    return len(opens), how


# --- Report ------------------------------------------------------------------------------
def median_run(runs: list[Run]) -> Run:
    peaks = [r.peak_mb for r in runs if r.peak_mb is not None]
    cpus = [r.cpu_s for r in runs if r.cpu_s is not None]
    return Run(
        statistics.median(r.seconds for r in runs),
        max(peaks) if peaks else None,
        statistics.median(cpus) if cpus else None,
        runs[0].jobs,
    )


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def time_finished_demo(folder: Path, repeats: int) -> None:
    """Median ``snakemake -n`` of the workflow in ``folder`` (nothing left to do) against Snakemake's own floor."""
    print(cpu_line())
    with tempfile.TemporaryDirectory(prefix="dag_floor-") as tmp:
        floor_dir = Path(tmp)
        (floor_dir / "Snakefile").write_text(FLOOR_SNAKEFILE)
        floor = median_run(
            [timed(snakemake_cmd(floor_dir, floor_dir / "Snakefile"), floor_dir)[0] for _ in range(repeats)]
        )
    runs = [timed(snakemake_cmd(folder, REPO / "Snakefile"), folder)[0] for _ in range(repeats)]
    demo, planned = median_run(runs), sum(v for k, v in runs[0].jobs.items() if k != "all")
    print(f"snakemake -n in {folder}: median of {repeats}: {demo.seconds:.2f} s, {planned} jobs planned")
    print(f"floor (a one-rule Snakefile, -n): median of {repeats}: {floor.seconds:.2f} s")
    print(f"difference {demo.seconds - floor.seconds:+.2f} s (targets: at most 2 s, or within 1 s of the floor)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", default="0.125,0.25,0.5,1", help="sizes as fractions of Kaggle 2025")
    parser.add_argument("--repeats", type=int, default=3, help="dry-runs per fraction and state (median)")
    parser.add_argument("--states", default=",".join(STATES), help=f"results states to time, of {','.join(STATES)}")
    parser.add_argument(
        "--shards",
        default="32,32,16",
        help="BirdNET, training mel and soundscape mel shards (fewer: a quicker self-check)",
    )
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    parser.add_argument("--out", type=Path, help="also write the table as CSV")
    parser.add_argument(
        "--finished-demo",
        type=Path,
        help="instead: time -n in this folder (a finished `make demo`, e.g. the repository root) against the floor",
    )
    args = parser.parse_args()
    if args.finished_demo:
        time_finished_demo(args.finished_demo.resolve(), args.repeats)
        return
    fractions = [float(f) for f in args.fractions.split(",")]
    birdnet, mel_train, mel_soundscape = (int(n) for n in args.shards.split(","))
    overrides = {**OVERRIDES, "birdnet": {"n_shards": birdnet}}
    overrides["mel_shards"] = {"n_train_shards": mel_train, "n_soundscape_shards": mel_soundscape}
    states = [s for s in STATES if s in args.states.split(",")]
    if len(states) != len(args.states.split(",")):
        parser.error(f"--states: each of {', '.join(STATES)}")

    made_workdir = args.workdir is None or not args.workdir.exists()
    root = Path(tempfile.mkdtemp(prefix="dag_scale-")) if args.workdir is None else args.workdir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    print(cpu_line())
    print(f"load average at start {os.getloadavg()[0]:.2f}; scratch folder {root}")
    print(f"settings over configs/nips4b.yaml: {json.dumps(overrides)}")
    rows, made = [], []
    busy0, own0, t_start = busy_cpu_seconds(), own_cpu_seconds(children=True), time.perf_counter()
    try:
        floor_dir = root / "floor"
        floor_dir.mkdir()
        made.append(floor_dir)
        (floor_dir / "Snakefile").write_text(FLOOR_SNAKEFILE)
        floor = median_run(
            [timed(snakemake_cmd(floor_dir, floor_dir / "Snakefile"), floor_dir)[0] for _ in range(args.repeats)]
        )

        header = f"{'fraction':>8}  {'state':<9}{'train files':>12}{'soundscapes':>12}{'jobs planned':>13}"
        header += f"{'median s':>10}{'peak MB':>9}{'CPU s':>8}{'touch s':>9}"
        for i, fraction in enumerate(fractions):
            work = root / f"f{fraction:g}"
            if work.exists():
                raise SystemExit(f"{work} exists; remove it or choose another --workdir")
            made.append(work)
            layout = lay_out(work, fraction, overrides)
            n_train, n_soundscapes = len(layout.train_files), len(layout.soundscapes)
            print(
                f"\n== fraction {fraction:g}: {n_train:,} training files in {FULL_CLASSES} class folders, "
                f"{n_soundscapes:,} soundscapes, {TEST_SOUNDSCAPES} test files (laid out in {layout.seconds:.1f} s)"
            )
            print(header)
            for state in states:
                touch_s = write_state(layout, state)
                runs = [timed(workflow_cmd(layout), work)[0] for _ in range(args.repeats)]
                check_plan(state, runs[0].jobs, layout.config)
                run = median_run(runs)
                total = sum(v for k, v in run.jobs.items() if k != "all")
                print(
                    f"{fraction:>8g}  {state:<9}{n_train:>12,}{n_soundscapes:>12,}{total:>13}"
                    f"{run.seconds:>10.2f}{fmt(run.peak_mb, '.0f'):>9}{fmt(run.cpu_s, '.1f'):>8}{touch_s:>9.1f}"
                )
                rows.append([fraction, state, n_train, n_soundscapes, total, run.seconds])
                rows[-1] += [run.peak_mb, run.cpu_s, touch_s, json.dumps(run.jobs, sort_keys=True)]
                if i == 0:
                    print("          " + ", ".join(f"{k} {v}" for k, v in run.jobs.items() if k != "all"))
            if i == 0 and states[-1] == "ensemble":  # every audio path is an input of some job here
                opened, how = audio_opened(workflow_cmd(layout), work)
                n_audio = len(layout.train_files) + len(layout.soundscapes) + TEST_SOUNDSCAPES
                print(f"audio files the dry-run opened: {opened} of {n_audio:,} inputs (seen by {how})")
                if opened:
                    raise AssertionError("the dry-run reads audio: empty files do not stand for real ones")
            elif i == 0:
                print("(the check that a dry-run opens no audio file runs with the ensemble state)")
        busy1, own1, t_end = busy_cpu_seconds(), own_cpu_seconds(children=True), time.perf_counter()
        print(
            f"\nfloor (a one-rule Snakefile, -n): median {floor.seconds:.2f} s, peak {fmt(floor.peak_mb, '.0f')} MB, "
            f"CPU {fmt(floor.cpu_s, '.1f')} s"
        )
        print(
            f"median of {args.repeats} dry-runs each (peak MB: the largest; CPU s: user + system, median); "
            "touch s: the snakemake --touch run that recorded the state (not a dry-run)"
        )
        if busy0 is not None and busy1 is not None:
            others = max(0.0, (busy1 - busy0) - (own1 - own0))
            print(
                f"CPU used by other processes while timing: {others:.1f} core-s over {t_end - t_start:.1f} s, "
                f"{others / ((t_end - t_start) * (os.cpu_count() or 1)):.0%} of the machine (0 = a quiet machine)"
            )
        if args.out:
            with args.out.open("w", newline="") as f:
                out = csv.writer(f)
                out.writerow(CSV_COLUMNS)
                out.writerows(rows)
                out.writerow(["floor", "", 0, 0, 1, floor.seconds, floor.peak_mb, floor.cpu_s, 0.0, ""])
            print(f"wrote {args.out}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            for path in made:
                shutil.rmtree(path, ignore_errors=True)
            if made_workdir:
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
