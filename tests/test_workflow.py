"""The workflow itself: lint-clean, and the demo DAG runs end to end on tiny data."""

import subprocess

import pandas as pd
import pytest
import yaml

from conftest import BIN, REPO, TINY_DEMO, run_snakemake


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
    for rule in ("demo_data", "manifest", "all"):
        assert rule in out


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "tiny.yaml").write_text(yaml.safe_dump({"demo": TINY_DEMO}))
    run_snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    return workdir


@pytest.mark.slow
def test_demo_run_builds_the_manifest(demo_run):
    clips = pd.read_parquet(demo_run / "results/manifest/clips.parquet")
    rejected = pd.read_csv(demo_run / "results/manifest/rejected.csv")
    truth = pd.read_csv(demo_run / "resources/demo/messy_truth.csv")
    assert len(rejected) == (truth["expected"] == "rejected").sum()
    assert len(clips) > 0
    for rule in ("demo_data", "manifest"):
        assert (demo_run / f"results/logs/{rule}.log").stat().st_size > 0
        assert (demo_run / f"results/benchmarks/{rule}.tsv").is_file()
    assert "kept" in (demo_run / "results/logs/manifest.log").read_text()


@pytest.mark.slow
def test_second_run_has_nothing_to_do(demo_run):
    proc = run_snakemake(demo_run, "-n", "--configfile", "tiny.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_changed_manifest_knob_reruns_the_manifest_only(demo_run):
    (demo_run / "knob.yaml").write_text(yaml.safe_dump({"manifest": {"min_duration_s": 0.2}}))
    proc = run_snakemake(demo_run, "-n", "--configfile", "tiny.yaml", "knob.yaml")
    out = proc.stdout + proc.stderr
    assert "manifest" in out and "demo_data" not in out


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
