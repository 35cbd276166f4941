"""The workflow itself: lint-clean, and the demo DAG runs end to end on tiny data."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch
import yaml

from birdclef.audio import read_audio, write_ogg
from birdclef.shards import shard_for

from conftest import BIN, REPO, TINY_DEMO, planned_jobs, run_snakemake

SHARDS = {"birdnet": {"n_shards": 3}, "mel_shards": {"n_train_shards": 2, "n_soundscape_shards": 1}}
# One tiny CNN teacher and a head on BirdNET embeddings, two folds, few epochs: the DAG, not the model, is under test.
TRAIN = {
    "folds": {"n_folds": 2},
    "models": {
        "tiny": {"backbone": "mobilenetv3_small_050", "head": "sed"},
        "head": {"kind": "birdnet_head", "head": "linear", "train": {"epochs": 3}},
    },
    "teachers": ["tiny", "head"],
    "students": ["tiny"],
    "train": {"epochs": 2, "batch_size": 8},
    "export": {"calibration_windows": 16},
}
TINY = {"demo": TINY_DEMO, **SHARDS, **TRAIN}
TRAINING = {"folds", "train_teacher", "training_summary", "pseudo_label", "train_student", "score_models"}
TRAINING |= {"predict_validation", "fit_ensemble", "export_int8", "export_summary", "bundle", "infer", "score"}
TRAINING |= {"runtimes"}
TRAINING |= {"plot_zero_shot"}  # the heads' per-class scores against BirdNET zero-shot follow score_models
TRAINING |= {"plot_rounds"}  # so do the scores per round
# The exports follow the fit_ensemble checkpoint: a dry-run lists them only when it can evaluate that
# checkpoint's output, which depends on what else reruns; knob tests leave them out unless they are the point.
PLANNED = TRAINING - {"export_int8"}
TEACHERS = PLANNED - {"folds"}


def test_snakemake_lint_is_clean(tmp_path):
    proc = run_snakemake(tmp_path, "--lint")
    assert "Congratulations" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "cmd",
    [["snakefmt", "--check", "."], ["ruff", "check", "."], ["ruff", "format", "--check", "."]],
    ids=" ".join,
)
def test_code_is_formatted_and_linted(cmd):
    proc = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_lists_the_dag(tmp_path):
    proc = run_snakemake(tmp_path, "-n")
    out = proc.stdout + proc.stderr
    rules = (
        "demo_data",
        "manifest",
        "birdnet_scan",
        "quality_filter",
        "dedup",
        "mel_train_shard",
        "mel_soundscape_shard",
        "folds",
        "train_teacher",
        "training_summary",
        "embed_shard",
        "pseudo_label",
        "train_student",
        "mel_validation_shard",
        "predict_validation",
        "score_models",
        "fit_ensemble",
        "export_summary",
        "infer",
        "score",
        "runtimes",
    )
    for rule in (*rules, "all"):
        assert rule in out


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run_snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    return workdir


@pytest.mark.slow
def test_demo_run_builds_the_manifest(demo_run):
    clips = pd.read_parquet(demo_run / "results/manifest/clips.parquet")
    rejected = pd.read_csv(demo_run / "results/manifest/rejected.csv")
    truth = pd.read_csv(demo_run / "resources/demo/messy_truth.csv")
    # every messy file where the truth says, each rejection with its reason; the counts add up
    assert sorted(rejected["filename"]) == sorted(truth.loc[truth["expected"] == "rejected", "filename"])
    assert rejected["reason"].str.len().gt(0).all()
    assert set(truth.loc[truth["expected"] == "kept", "filename"]) <= set(clips["filename"])
    train = pd.read_csv(demo_run / "resources/demo/train.csv")
    listed_rejected = rejected["train_csv_row"].notna().sum()
    assert len(clips) + listed_rejected == len(train)  # every row of train.csv: kept or set aside
    assert (demo_run / "results/manifest/summary.png").read_bytes()[:4] == b"\x89PNG"
    for rule in ("demo_data", "manifest", "quality_filter", "dedup", "birdnet_scan/shard-000"):
        assert (demo_run / f"results/logs/{rule}.log").stat().st_size > 0
        assert (demo_run / f"results/benchmarks/{rule}.tsv").is_file()
    assert "kept" in (demo_run / "results/logs/manifest.log").read_text()


@pytest.mark.slow
def test_demo_run_scans_filters_and_dedups_every_clip(demo_run):
    manifest = pd.read_parquet(demo_run / "results/manifest/clips.parquet")
    scanned = pd.concat(
        pd.read_parquet(p) for p in sorted((demo_run / "results/birdnet").glob("shard-*.clips.parquet"))
    )
    assert sorted(scanned["clip_id"]) == sorted(manifest["clip_id"])  # each clip in exactly one shard
    assert (scanned["n_segments"] > 0).all() and scanned["error"].isna().all()
    clips = pd.read_parquet(demo_run / "results/dedup/clips.parquet")
    assert sorted(clips["clip_id"]) == sorted(manifest["clip_id"])
    assert (clips["keep"] == clips["quality_keep"] & clips["dedup_keep"]).all()
    assert clips["quality_keep"].sum() > 0.8 * len(clips)
    assert clips.loc[clips["keep"], "best_windows"].map(len).gt(0).all()
    for png in ("filter/quality_filter.png", "dedup/duplicates.png"):
        assert (demo_run / "results" / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_demo_run_caches_mels_of_every_kept_clip_and_soundscape_window(demo_run):
    clips = pd.read_parquet(demo_run / "results/dedup/clips.parquet")
    train = pd.concat(pd.read_parquet(p) for p in sorted((demo_run / "results/mels/train").glob("shard-*.parquet")))
    assert set(train["id"]) == set(clips.loc[clips["keep"], "clip_id"])
    windows = pd.read_parquet(demo_run / "results/mels/soundscapes/shard-000.parquet")
    n_soundscapes = len(list((demo_run / "resources/demo/train_soundscapes").glob("*.ogg")))
    assert len(windows) == n_soundscapes * TINY_DEMO["soundscape_seconds"] // 5
    assert windows["row_id"].is_unique and (windows["primary"] == -1).all()


@pytest.mark.slow
def test_demo_run_trains_a_teacher_on_every_fold(demo_run):
    clips = pd.read_parquet(demo_run / "results/dedup/clips.parquet")
    kept = clips[clips["keep"]]
    folds = pd.read_csv(demo_run / "results/folds.csv")
    assert sorted(folds["clip_id"]) == sorted(kept["clip_id"]) and set(folds["fold"]) == {0, 1}
    classes = sorted(pd.read_csv(demo_run / "resources/demo/taxonomy.csv")["primary_label"])
    predicted = []
    for fold in (0, 1):
        out = demo_run / f"results/models/teacher/tiny/fold{fold}"
        payload = torch.load(out / "model.pt", weights_only=True)
        assert payload["classes"] == classes and payload["model_config"]["backbone"] == "mobilenetv3_small_050"
        oof = pd.read_parquet(out / "oof.parquet")
        assert set(oof["id"]) == set(folds.loc[folds["fold"] == fold, "clip_id"])  # every held-out clip, only those
        assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2]
        assert json.loads((out / "metrics.json").read_text())["fold"] == fold
        assert "epoch 2/2" in (demo_run / f"results/logs/train_teacher/tiny/fold{fold}.log").read_text()
        predicted += list(oof["id"].unique())
    assert sorted(predicted) == sorted(kept["clip_id"])  # each kept clip predicted out of fold exactly once
    summary = json.loads((demo_run / "results/models/teacher/tiny/summary.json").read_text())
    assert 0 <= summary["oof_macro_roc_auc"] <= 1 and summary["train_samples_per_s"] > 0
    assert (demo_run / "results/models/teacher/tiny/training.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_demo_run_pseudo_labels_every_soundscape_window(demo_run):
    windows = pd.read_parquet(demo_run / "results/mels/soundscapes/shard-000.parquet", columns=["row_id"])
    labels = pd.read_parquet(demo_run / "results/pseudo/round1/labels.parquet")
    assert list(labels["row_id"]) == list(windows["row_id"])
    assert set(labels["teachers"]) == {"tiny:1,head:1,birdnet:1"}
    classes = sorted(pd.read_csv(demo_run / "resources/demo/taxonomy.csv")["primary_label"])
    values = labels[classes].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    assert (labels["keep"] == (labels["max_prob"] >= 0.5)).all()
    assert (demo_run / "results/pseudo/round1/pseudo_labels.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_demo_run_distils_a_student_on_every_fold(demo_run):
    for fold in (0, 1):
        out = demo_run / f"results/models/student/tiny/fold{fold}"
        assert torch.load(out / "model.pt", weights_only=True)["fold"] == fold
        assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2]
        log = (demo_run / f"results/logs/train_student/student/tiny/fold{fold}.log").read_text()
        assert f"soundscape windows outside soundscape fold {fold}" in log  # it learns from the other folds' only
    summary = json.loads((demo_run / "results/models/student/tiny/summary.json").read_text())
    assert summary["stage"] == "student" and 0 <= summary["oof_macro_roc_auc"] <= 1


@pytest.mark.slow
def test_demo_run_scores_every_teacher_and_student_on_the_labelled_soundscapes(demo_run):
    scores = pd.read_csv(demo_run / "results/scores/models.csv")
    assert sorted(zip(scores["stage"], scores["model"], strict=True)) == [
        ("birdnet", "zero_shot"),
        ("student", "tiny"),
        ("teacher", "head"),
        ("teacher", "tiny"),
    ]
    assert scores["macro_roc_auc"].between(0, 1).all() and (scores["folds"] == 2).all()
    assert (demo_run / "results/scores/models.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_demo_run_fits_the_ensemble_and_exports_every_weighted_member(demo_run):
    weights = json.loads((demo_run / "results/ensemble/weights.json").read_text())
    assert weights["fitted_on"] == "validation soundscapes"
    members = weights["members"]
    assert set(members) == {"teacher/tiny", "teacher/head", "student/tiny"}
    assert sum(m["weight"] for m in members.values()) == pytest.approx(1.0)
    assert 0 <= weights["blend_score"] <= 1 and weights["cv"]["n_folds"] == 2  # two validation soundscapes
    # calibration: all 8 windows of the two 20 s unlabelled soundscapes (16 asked)
    for member in (m for m, entry in members.items() if entry["weight"] > 0):
        out = demo_run / "results/export" / member
        quant = json.loads((out / "quant.json").read_text())
        assert quant["choice"] in ("int8", "fp32") and quant["precision_hint"] == "f32"
        assert quant["calibration_windows"] == 8 and quant["max_abs_diff_fp32_vs_torch"] < 1e-4
        assert set(quant["scores"]) == {"torch", "fp32", "int8"}
        assert all((out / f).stat().st_size > 0 for f in ("fp32.xml", "fp32.bin", "int8.xml", "int8.bin"))
    assert (demo_run / "results/ensemble/ensemble.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_demo_run_writes_a_submission_shaped_like_the_sample_and_scores_it(demo_run):
    sample = pd.read_csv(demo_run / "resources/demo/sample_submission.csv")
    submission = pd.read_csv(demo_run / "results/submission.csv")
    assert list(submission.columns) == list(sample.columns)
    assert submission["row_id"].tolist() == sample["row_id"].tolist()  # every test window, in the sample's order
    values = submission.iloc[:, 1:].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    assert pd.read_csv(demo_run / "results/infer/rejected.csv").empty
    score = json.loads((demo_run / "results/score.json").read_text())
    assert 0 <= score["macro_roc_auc"] <= 1 and score["rows"] == len(sample)


# Every report() output of a whole demo run: the report must show each of them.
REPORT_FILES = [
    "results/manifest/summary.png",
    "results/filter/quality_filter.png",
    "results/dedup/duplicates.png",
    "results/dedup/duplicates.csv",
    "results/models/teacher/tiny/training.png",
    "results/models/teacher/head/training.png",
    "results/models/student/tiny/training.png",
    "results/scores/embedding_members_vs_zero_shot.png",
    "results/pseudo/round1/pseudo_labels.png",
    "results/scores/models.png",
    "results/scores/rounds.png",
    "results/ensemble/ensemble.png",
    "results/ensemble/per_class.png",
    "results/export/summary.png",
    "results/runtimes.png",
]


@pytest.mark.slow
def test_the_report_holds_every_figure_of_the_run(demo_run, tmp_path):
    run_snakemake(demo_run, "--configfile", "tiny.yaml", "--report", str(tmp_path / "report.html"))
    html = (tmp_path / "report.html").read_text()
    for path in REPORT_FILES:
        assert f'"{path}": {{' in html, f"{path} is not in the report"
        entry = html.split(f'"{path}": {{', 1)[1].split('"data_uri": "', 1)
        assert '"caption": "<p>' in entry[0], f"{path} has no caption"
        mime = "image/png" if path.endswith(".png") else "text/csv"
        assert entry[1].startswith(f"data:{mime}"), f"{path} is not embedded in the report"
    runtimes = pd.read_csv(demo_run / "results/runtimes.csv")
    assert TRAINING - {"runtimes"} <= set(runtimes["rule"])  # every rule that ran has its time


@pytest.mark.slow
def test_a_second_round_of_pseudo_labels_reuses_the_first(demo_run, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(demo_run, work, symlinks=True)
    (work / "rounds.yaml").write_text(yaml.safe_dump({"pseudo_label": {"rounds": 2}}))
    target = "results/models/student2/tiny/training.png"
    args = ["--configfile", "tiny.yaml", "rounds.yaml"]
    assert planned_jobs(work, target, *args) == {"pseudo_label": 1, "train_student": 2, "training_summary": 1}
    plan = run_snakemake(work, "-n", target, *args).stdout
    pseudo_inputs = plan.split("rule pseudo_label:")[1].split("output:")[0]
    assert "results/models/student/tiny/fold0/model.pt" in pseudo_inputs and "teacher" not in pseudo_inputs
    round1 = (work / "results/pseudo/round1/labels.parquet").stat().st_mtime_ns
    run_snakemake(work, target, "--cores", "2", *args)
    labels = pd.read_parquet(work / "results/pseudo/round2/labels.parquet")
    assert set(labels["teachers"]) == {"tiny:1,birdnet:1"}  # round 1's student tiny, as the teacher
    log = (work / "results/logs/pseudo_label/round2.log").read_text()
    assert "teacher tiny (2 models, weight 1, each soundscape fold by its own fold's model)" in log
    assert set(labels["fold"]) == {0, 1}
    summary = json.loads((work / "results/models/student2/tiny/summary.json").read_text())
    assert summary["stage"] == "student2"
    assert (work / "results/pseudo/round1/labels.parquet").stat().st_mtime_ns == round1
    # Round n's settings rerun rounds n and later only.
    (work / "round2.yaml").write_text(yaml.safe_dump({"pseudo_label": {"rounds": 2, "per_round": [{}, {"power": 2}]}}))
    later = {"pseudo_label": 1, "train_student": 2, "training_summary": 1}
    assert planned_jobs(work, target, "--configfile", "tiny.yaml", "round2.yaml") == later
    (work / "round1.yaml").write_text(yaml.safe_dump({"pseudo_label": {"rounds": 2, "per_round": [{"mixup_p": 1.0}]}}))
    both = {"train_student": 4, "pseudo_label": 1, "training_summary": 1}  # round 1's students, then all of round 2
    assert planned_jobs(work, target, "--configfile", "tiny.yaml", "round1.yaml") == both


@pytest.mark.slow
def test_a_killed_training_job_resumes_from_its_last_epoch(demo_run, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(demo_run, work, symlinks=True)
    fold_dir = work / "results/models/teacher/tiny/fold0"
    for name in ("last.pt", "best.pt", "best_oof.parquet"):
        (fold_dir / name).unlink()
    (work / "longer.yaml").write_text(yaml.safe_dump({"train": {"epochs": 6}}))
    target = "results/models/teacher/tiny/fold0/model.pt"
    args = [target, "--cores", "2", "--configfile", "tiny.yaml", "longer.yaml"]
    start_then_kill(work, args, (fold_dir / "last.pt").exists)
    killed_at = torch.load(fold_dir / "last.pt", weights_only=True)["epoch"]
    assert killed_at < 5, "the job finished before it could be killed"
    assert not (fold_dir / "model.pt").exists()

    run_snakemake(work, "--unlock", *args[1:])
    run_snakemake(work, *args)
    log = (work / "results/logs/train_teacher/tiny/fold0.log").read_text()
    assert f"resuming from epoch {killed_at + 1} of 6" in log
    assert list(pd.read_csv(fold_dir / "history.csv")["epoch"]) == [1, 2, 3, 4, 5, 6]
    assert (fold_dir / "model.pt").is_file()


def start_then_kill(work, args: list[str], ready, timeout: float = 300) -> None:
    """Start Snakemake in ``work``, wait until ``ready()`` holds, then SIGKILL the whole run, as when a node dies."""
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), *args]
    proc = subprocess.Popen(cmd, cwd=work, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_a_run_killed_in_the_mel_stage_resumes_to_byte_identical_shards(demo_run, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(demo_run, work, symlinks=True)
    shards = sorted((work / "results/mels/train").glob("shard-*.parquet"))
    uninterrupted = {p.name: p.read_bytes() for p in shards}
    for p in shards:
        p.unlink()
    logs = work / "results/logs/mel_train_shard"
    shutil.rmtree(logs)
    args = [*(str(p.relative_to(work)) for p in shards), "--cores", "1", "--configfile", "tiny.yaml"]
    # killed once the second shard's job is at work: it has read its clips and is computing mels
    second = logs / f"{shards[1].stem}.log"
    start_then_kill(work, args, lambda: second.is_file() and "kept clips" in second.read_text())
    assert not shards[1].exists(), "the job finished before it could be killed"

    run_snakemake(work, "--unlock", "--configfile", "tiny.yaml")
    run_snakemake(work, *args)
    assert {p.name: p.read_bytes() for p in shards} == uninterrupted


@pytest.mark.slow
def test_demo_run_finds_exactly_the_planted_duplicates(demo_run):
    truth = pd.read_csv(demo_run / "resources/demo/duplicates_truth.csv")
    planted = {frozenset(p) for p in zip(truth["original"], truth["duplicate"], strict=True)}
    found = pd.read_csv(demo_run / "results/dedup/duplicates.csv")
    pairs = {frozenset((f"{a}.ogg", f"{b}.ogg")) for a, b in zip(found["clip_id"], found["kept_clip_id"], strict=True)}
    assert pairs == planted  # precision and recall 1.0


@pytest.mark.slow
def test_second_run_has_nothing_to_do(demo_run):
    proc = run_snakemake(demo_run, "-n", "--configfile", "tiny.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("knob", "reruns"),
    [
        # The BirdNET shards wait for the manifest (a checkpoint); those whose clips
        # change then rerun (test_adding_one_clip_rebuilds_one_shard_of_each_stage).
        ({"manifest": {"min_duration_s": 0.2}}, {"manifest", "quality_filter", "dedup", *PLANNED, "all"}),
        ({"quality_filter": {"min_own_confidence": 0.3}}, {"quality_filter", "dedup", *PLANNED, "all"}),
        ({"dedup": {"threshold": 0.7}}, {"dedup", *PLANNED, "all"}),
        (
            {"mel": {"n_mels": 64}},
            {"mel_train_shard", "mel_soundscape_shard", "mel_validation_shard", *TEACHERS, "all"},
        ),
        ({"folds": {"seed": 1}}, {*PLANNED, "all"}),
        ({"train": {"lr": 0.01}}, {*TEACHERS, "all"}),
        ({"pseudo_label": {"min_max_prob": 0.3}}, {*TEACHERS - {"train_teacher"}, "all"}),
        ({"distill": {"temperature": 2.0}}, {*TEACHERS - {"train_teacher", "pseudo_label"}, "all"}),
        ({"distill": {"drop_path": 0.15}}, {*TEACHERS - {"train_teacher", "pseudo_label"}, "all"}),
        ({"distill": {"soundscape_mixup": {"p": 0.5}}}, {*TEACHERS - {"train_teacher", "pseudo_label"}, "all"}),
        ({"ensemble": {"method": "equal"}}, {"fit_ensemble", "export_summary", "bundle", "infer", "score", "all"}),
        ({"export": {"tolerance": 0.01}}, {"export_int8", "export_summary", "bundle", "infer", "score", "all"}),
        ({"postprocess": {"file_max_weight": 0.5}}, {"bundle", "infer", "score", "all"}),
        ({"bundle": {"competition": "birdclef-2026"}}, {"bundle", "infer", "score", "all"}),
        (
            {"birdnet": {"top_k": 3}},
            {"birdnet_scan", "quality_filter", "dedup", *PLANNED, "all"},
        ),
        (
            {"models": {"tiny": {"backbone": "mobilenetv3_small_050", "head": "linear"}}},
            {*TEACHERS, "all"},
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
)
def test_a_changed_knob_reruns_its_stage_and_what_follows(demo_run, knob, reruns):
    (demo_run / "knob.yaml").write_text(yaml.safe_dump(knob))
    planned = set(planned_jobs(demo_run, "--configfile", "tiny.yaml", "knob.yaml"))
    assert planned - {"export_int8"} == (reruns | {"runtimes"}) - {"export_int8"}  # runtimes follow any rerun
    assert "export_int8" in planned or "export_int8" not in reruns


def test_real_data_dir_is_used_as_is(tmp_path, shared_data):
    (tmp_path / "real.yaml").write_text(yaml.safe_dump({"data_dir": str(shared_data)}))
    proc = run_snakemake(tmp_path, "-n", "--configfile", "real.yaml")
    out = proc.stdout + proc.stderr
    assert "manifest" in out and "demo_data" not in out


def test_missing_data_dir_is_a_clear_error(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data_dir": str(tmp_path / "nowhere")}))
    proc = run_snakemake(tmp_path, "-n", "--configfile", "c.yaml", check=False)
    assert proc.returncode != 0
    assert "data_dir" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def real_layout_run(tmp_path_factory, tiny_demo):
    """The tiny demo copied to a folder of its own and run as if it were real data."""
    workdir = tmp_path_factory.mktemp("real_layout")
    shutil.copytree(tiny_demo, workdir / "data")
    # data_dir relative to the working folder, so that a copy of the folder is a run of its own
    # Its bundle needs no wheels nor timing: demo_run's bundle is the one tested in an environment of its own.
    lean_bundle = {"bundle": {"wheels": False, "timing_soundscapes": 0}}
    (workdir / "c.yaml").write_text(yaml.safe_dump({"data_dir": "data", **SHARDS, **TRAIN, **lean_bundle}))
    run_snakemake(workdir, "--cores", "2", "--configfile", "c.yaml")
    return workdir


def ran_jobs(proc) -> list[str]:
    """'rule' or 'rule shard' of every job a Snakemake run started, from its output."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) )", proc.stdout + proc.stderr)[1:]:
        rule = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block).group(1)
        shard = re.search(r"\n    wildcards: (?:\w+=\w+, )*shard=(shard-\d+)", block.split("\nShell command")[0])
        jobs.append(f"{rule} {shard.group(1)}" if shard else rule)
    return jobs


@pytest.mark.slow
def test_two_clean_runs_with_the_same_seed_write_the_same_submission(demo_run, real_layout_run):
    # The same tiny demo data (seed 7), once generated by the workflow and once copied in as real data:
    # two whole runs from scratch, in separate folders, on the CPU.
    first = pd.read_csv(demo_run / "results/submission.csv")
    second = pd.read_csv(real_layout_run / "results/submission.csv")
    pd.testing.assert_frame_equal(first, second, check_exact=True)


@pytest.mark.slow
def test_a_corrupt_or_missing_test_file_costs_its_rows_not_the_submission(real_layout_run, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(real_layout_run, work, symlinks=True)
    data = work / "data"
    broken, gone = sorted((data / "test_soundscapes").glob("*.ogg"))
    broken.write_bytes(broken.read_bytes()[:300])  # cut inside the first pages
    gone.unlink()
    assert planned_jobs(work, "--configfile", "c.yaml") == {"infer": 1, "score": 1, "runtimes": 1, "all": 1}
    run_snakemake(work, "--cores", "2", "--configfile", "c.yaml")
    sample = pd.read_csv(data / "sample_submission.csv")
    submission = pd.read_csv(work / "results/submission.csv")
    assert submission["row_id"].tolist() == sample["row_id"].tolist()
    rejected = pd.read_csv(work / "results/infer/rejected.csv").set_index("file")
    assert set(rejected.index) == {broken.name, gone.stem}
    assert "no audio" in rejected.loc[gone.stem, "reason"]
    assert rejected["rows_filled"].sum() == len(sample)  # the two files are all of the test set
    assert submission.iloc[:, 1:].nunique().max() == 1  # every row is the class prior

    for f in (data / "test_soundscapes").iterdir():
        f.unlink()
    run_snakemake(work, "--cores", "2", "--configfile", "c.yaml")
    empty = pd.read_csv(work / "results/submission.csv")  # the sample's rows, every one the class prior
    assert empty["row_id"].tolist() == sample["row_id"].tolist()
    assert (empty.iloc[:, 1:].to_numpy() == submission.iloc[:, 1:].to_numpy()).all()
    assert "no test soundscapes" in (work / "results/logs/infer.log").read_text()


@pytest.mark.slow
def test_adding_one_clip_rebuilds_one_shard_of_each_stage(real_layout_run):
    data = real_layout_run / "data"
    train = pd.read_csv(data / "train.csv")
    kept = set(pd.read_parquet(real_layout_run / "results/manifest/clips.parquet")["filename"])
    src = train[train["filename"].isin(kept)].iloc[0]
    new = src.copy()
    new["filename"] = f"{src['primary_label']}/XC999999.ogg"
    new["author"] = "Someone Else"  # same author, label and duration would make it a (metadata) duplicate
    audio, sr = read_audio(data / "train_audio" / src["filename"])
    write_ogg(data / "train_audio" / new["filename"], audio[::-1], sr)  # played backwards: not a duplicate
    pd.concat([train, new.to_frame().T]).to_csv(data / "train.csv", index=False)

    # Up to the mel cache for real; what training would rerun is the dry-run's to say (it is every fold).
    proc = run_snakemake(real_layout_run, "--until", "mel_train_shard", "--cores", "2", "--configfile", "c.yaml")
    clip_id = new["filename"].removesuffix(".ogg")
    scan, mel = shard_for(clip_id, 3), shard_for(clip_id, 2)
    expected = ["manifest", f"birdnet_scan {scan}", "quality_filter", "dedup", f"mel_train_shard {mel}"]
    assert sorted(ran_jobs(proc)) == sorted(expected)
    assert clip_id in set(pd.read_parquet(real_layout_run / f"results/mels/train/{mel}.parquet")["id"])
    # BirdNET embeds again only the training shard of the same name (the same hash of the clip id)
    dry = run_snakemake(real_layout_run, "-n", "--configfile", "c.yaml")
    embedded = [job for job in ran_jobs(dry) if job.startswith("embed_shard")]
    assert embedded == [f"embed_shard {mel}"] and f"set=train, shard={mel}" in dry.stdout
    planned = set(planned_jobs(real_layout_run, "--configfile", "c.yaml"))
    assert planned - {"export_int8"} == PLANNED | {"all", "embed_shard"}  # a new split: every fold retrains


@pytest.mark.slow
@pytest.mark.real_data
def test_real_recordings_run_through_dedup(tmp_path, shared_data):
    (tmp_path / "real.yaml").write_text(yaml.safe_dump({"data_dir": str(shared_data)}))
    run_snakemake(tmp_path, "results/dedup/clips.parquet", "--cores", "2", "--configfile", "real.yaml")
    train = pd.read_csv(shared_data / "train.csv")
    manifest = pd.read_parquet(tmp_path / "results/manifest/clips.parquet")
    rejected = pd.read_csv(tmp_path / "results/manifest/rejected.csv")
    clips = pd.read_parquet(tmp_path / "results/dedup/clips.parquet")
    assert len(manifest) + len(rejected) >= len(train) and sorted(clips["clip_id"]) == sorted(manifest["clip_id"])
    # NIPS4B: 87 classes, of which BirdNET knows the birds (68 by scientific name, 2 more by common name)
    assert clips.groupby("primary_label")["birdnet_knows_species"].first().sum() >= 65
    assert 0.8 * len(clips) < clips["keep"].sum() < len(clips)  # it drops some, not many
    assert clips.groupby("primary_label")["keep"].sum().min() >= min(5, clips["primary_label"].value_counts().min())
    print(f"NIPS4B: {clips['keep'].sum()} of {len(clips)} clips kept; {(~clips['dedup_keep']).sum()} duplicates")


# --- The bundle, in an environment of its own ------------------------------------------------
def pinned(*names: str) -> list[str]:
    """``name==version`` from requirements.txt."""
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().split() if "==" in line)
    return [f"{name}=={pins[name]}" for name in names]


@pytest.fixture(scope="module")
def bundle_env(tmp_path_factory):
    """A virtual environment with numpy, scipy and soundfile at the pinned versions, and nothing else."""
    import sys

    env = tmp_path_factory.mktemp("bundle_env") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    pip = [str(env / "bin/python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *pinned("numpy", "scipy", "soundfile")], check=True)
    return env


def kaggle_input(demo_run, root, test_files, sample: bool = True):
    """A folder laid out like /kaggle/input: the bundle as a dataset, the competition with its test soundscapes."""
    spec = json.loads((demo_run / "results/bundle/bundle.json").read_text())
    nb = json.loads((demo_run / "results/bundle/kaggle_notebook.ipynb").read_text())
    config = yaml.safe_load((REPO / "config.yaml").read_text())["bundle"]
    shutil.copytree(demo_run / "results/bundle", root / "input" / config["kaggle_dataset"])
    competition = root / "input" / config["competition"]
    (competition / "test_soundscapes").mkdir(parents=True)
    for path in test_files:
        shutil.copy(path, competition / "test_soundscapes" / path.name)
    if sample:
        shutil.copy(demo_run / "resources/demo/sample_submission.csv", competition / "sample_submission.csv")
    (root / "working").mkdir()
    return spec, nb, competition


def run_notebook(env, root, nb) -> subprocess.CompletedProcess:
    """The notebook's code cells, in order, in ``env``'s Python, with /kaggle/input and /kaggle/working moved."""
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    env_vars = {**os.environ, "KAGGLE_INPUT": str(root / "input"), "KAGGLE_WORKING": str(root / "working")}
    return subprocess.run([str(env / "bin/python"), "-c", code], capture_output=True, text=True, env=env_vars)


def assert_same_cells(a, b) -> None:
    assert list(a.columns) == list(b.columns) and a["row_id"].tolist() == b["row_id"].tolist()
    assert (a.iloc[:, 1:] - b.iloc[:, 1:]).abs().to_numpy().max() <= 1e-6


@pytest.mark.slow
@pytest.mark.bundle_env
def test_the_kaggle_notebook_installs_offline_and_writes_the_infer_rules_submission(demo_run, bundle_env, tmp_path):
    spec, nb, competition = kaggle_input(
        demo_run, tmp_path, sorted((demo_run / "resources/demo/test_soundscapes").glob("*.ogg"))
    )
    import nbformat

    nbformat.validate(nbformat.reads(json.dumps(nb), as_version=4))
    assert any(r.startswith("openvino==") for r in spec["requirements"])
    done = run_notebook(bundle_env, tmp_path, nb)
    assert done.returncode == 0, done.stderr[-3000:]
    ours = pd.read_csv(tmp_path / "working/submission.csv")
    assert_same_cells(ours, pd.read_csv(demo_run / "results/submission.csv"))
    # only the bundle's wheels came in (ai-edge-litert too when a BirdNET head is a member): no torch, no pandas
    listed = subprocess.run([str(bundle_env / "bin/python"), "-m", "pip", "list"], capture_output=True, text=True)
    assert "openvino" in listed.stdout and "torch" not in listed.stdout and "pandas" not in listed.stdout


@pytest.mark.slow
@pytest.mark.bundle_env
def test_the_bundle_in_its_own_environment_handles_the_messy_cases_as_infer_does(demo_run, bundle_env, tmp_path):
    """A corrupt file, a listed but missing file, an empty folder, a 1 s time budget: the rows infer's code writes."""
    from birdclef import bundle_predict

    test_files = sorted((demo_run / "resources/demo/test_soundscapes").glob("*.ogg"))
    spec, nb, competition = kaggle_input(demo_run, tmp_path, test_files[1:])  # the first is listed, but missing
    (competition / "test_soundscapes" / "corrupt.ogg").write_bytes(b"OggS" + bytes(300))
    bundle = tmp_path / "input" / yaml.safe_load((REPO / "config.yaml").read_text())["bundle"]["kaggle_dataset"]
    assert run_notebook(bundle_env, tmp_path, nb).returncode == 0
    predict = [str(bundle_env / "bin/python"), str(bundle / "predict.py")]
    test_dir = competition / "test_soundscapes"
    sample = competition / "sample_submission.csv"

    def expected(name, files, **kw):
        bundle_predict.run(bundle, files, sample, tmp_path / name, 2, **kw)
        return pd.read_csv(tmp_path / name)

    # corrupt and missing files: their rows get the prior, as in infer
    done = subprocess.run(
        [*predict, "--test-dir", str(test_dir), "--out", str(tmp_path / "a.csv")], capture_output=True, text=True
    )
    assert done.returncode == 0 and "corrupt.ogg" in done.stderr and test_files[0].stem in done.stderr
    assert_same_cells(pd.read_csv(tmp_path / "a.csv"), expected("a_ref.csv", bundle_predict.list_audio(test_dir)))
    # an empty folder: the sample's rows, all with the prior
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--test-dir", str(empty), "--sample-submission", str(sample), "--out", str(tmp_path / "b.csv")]
    assert subprocess.run([*predict, *args], capture_output=True).returncode == 0
    assert_same_cells(pd.read_csv(tmp_path / "b.csv"), expected("b_ref.csv", []))
    # a time budget of 1 s: every row still there, each either predicted (as without a budget) or the prior
    args = ["--test-dir", str(test_dir), "--out", str(tmp_path / "c.csv"), "--time-budget", "1"]
    done = subprocess.run([*predict, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    budget, full = pd.read_csv(tmp_path / "c.csv"), pd.read_csv(tmp_path / "a.csv")
    assert budget["row_id"].tolist() == full["row_id"].tolist()
    prior = pd.read_csv(tmp_path / "b.csv").iloc[0, 1:].to_numpy(dtype=float)
    for (_, b), (_, f) in zip(budget.iterrows(), full.iterrows(), strict=True):
        got = b.iloc[1:].to_numpy(dtype=float)
        assert abs(got - f.iloc[1:].to_numpy(dtype=float)).max() <= 1e-6 or abs(got - prior).max() <= 1e-6
