"""benchmarks/dag_scale.py at a tiny fraction: its synthetic results make the dry-runs plan every stage."""

import csv
import json
import subprocess

from conftest import BIN, REPO


def test_dag_scale_self_check_plans_every_stage(tmp_path):
    # 0.005 of Kaggle 2025: 140 training files, 50 soundscapes. The two states that read the checkpoints
    # (dedup: every fold job planned; ensemble: every checkpoint read), one dry-run each, and the floor;
    # few shards, since each job of the --touch runs that record the states costs Snakemake 0.1 s.
    out = tmp_path / "dag_scale.csv"
    cmd = [str(BIN / "python"), str(REPO / "benchmarks" / "dag_scale.py"), "--fractions", "0.005", "--repeats", "1"]
    cmd += ["--states", "dedup,ensemble", "--shards", "4,4,2", "--workdir", str(tmp_path / "scratch")]
    cmd += ["--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "audio files the dry-run opened: 0 of 194" in proc.stdout
    assert not (tmp_path / "scratch").exists()  # the scratch folders are removed without --keep

    rows = list(csv.DictReader(out.open()))
    states = {r["state"]: r for r in rows if r["fraction"] != "floor"}
    assert list(states) == ["dedup", "ensemble"]
    assert {(r["train_files"], r["soundscapes"]) for r in states.values()} == {("140", "50")}
    jobs = {state: json.loads(r["jobs_per_rule"]) for state, r in states.items()}
    # The dedup checkpoint read: every fold job planned, dedup itself not; fit_ensemble read: the exports planned.
    assert jobs["dedup"]["mel_train_shard"] == 4 and "dedup" not in jobs["dedup"]
    assert jobs["dedup"]["train_teacher"] == 4 * 5 and jobs["dedup"]["train_student"] == 5  # models x folds
    assert jobs["ensemble"]["export_int8"] == 5 and "fit_ensemble" not in jobs["ensemble"]
    planned = set().union(*jobs.values())
    assert {"train_teacher", "train_student", "export_int8", "infer"} <= planned
    assert all(float(r["median_s"]) > 0 for r in rows)


def test_the_full_birdclef_recipe_dry_runs_on_a_kaggle_sized_layout(tmp_path):
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from dag_scale import lay_out

    from conftest import planned_jobs

    lay_out(tmp_path, 0.003, {"data_dir": "data"})  # 84 training files in 206 class folders, 30 soundscapes
    jobs = planned_jobs(tmp_path, "--configfile", str(REPO / "configs" / "birdclef.yaml"), "bench.yaml")
    assert jobs["pretrained_weights"] == 3  # the three hub-weight CNNs, fetched before training
    assert jobs["train_teacher"] == 4 * 5  # teachers x folds
    assert jobs["pseudo_label"] == 4 and jobs["train_student"] == 2 * 5 * 4  # students x folds x rounds
    assert {"build_validation", "embed_shard", "fit_ensemble", "bundle", "infer"} <= set(jobs)
