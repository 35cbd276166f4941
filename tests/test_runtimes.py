import pandas as pd

from birdclef.runtimes import RUNTIME_COLUMNS, per_round, per_rule, read_benchmarks, round_of_job

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_every_benchmark_file_is_one_job_of_its_rule(tmp_path):
    (tmp_path / "train_teacher/tiny").mkdir(parents=True)
    (tmp_path / "manifest.tsv").write_text(HEADER + "5.5\t0:00:05\t300.1\t900\t1\t1\t1\t1\t90\t4.9\n")
    # repeat(): one row per repeat; '-' where Snakemake could not measure
    (tmp_path / "train_teacher/tiny/fold0.tsv").write_text(
        HEADER + "100\t0:01:40\t-\t-\t-\t-\t-\t-\t-\t-\n" + "200\t0:03:20\t-\t-\t-\t-\t-\t-\t-\t-\n"
    )
    jobs = read_benchmarks(tmp_path)
    assert list(jobs.columns) == RUNTIME_COLUMNS
    assert jobs["job"].tolist() == ["manifest", "train_teacher/tiny/fold0"]
    assert jobs["rule"].tolist() == ["manifest", "train_teacher"]
    assert jobs["seconds"].tolist() == [5.5, 150.0]
    assert jobs["max_rss_mb"].iloc[0] == 300.1 and pd.isna(jobs["max_rss_mb"].iloc[1])


def test_no_benchmarks_is_an_empty_table(tmp_path):
    assert read_benchmarks(tmp_path).empty


def test_per_rule_sums_jobs_and_keeps_the_slowest_slowest_rule_first():
    jobs = pd.DataFrame({"rule": ["m", "t", "t"], "job": ["m", "t/0", "t/1"], "seconds": [2.0, 300.0, 250.0]})
    table = per_rule(jobs)
    assert table.index.tolist() == ["t", "m"]
    assert table.loc["t"].tolist() == [550.0, 300.0, 2] and table.loc["m"].tolist() == [2.0, 2.0, 1]


def test_each_round_sums_its_pseudo_labels_and_its_students():
    jobs = pd.DataFrame(
        {
            "job": [
                "manifest",
                "train_teacher/t/fold0",
                "pseudo_label/round1",
                "train_student/student/s/fold0",
                "train_student/student/s/fold1",
                "pseudo_label/round2",
                "train_student/student2/s/fold0",
                "predict_validation/student2/s",
            ],
            "seconds": [1.0, 100.0, 5.0, 40.0, 50.0, 6.0, 70.0, 3.0],
        }
    ).assign(rule=lambda d: d["job"].str.split("/").str[0])
    assert round_of_job("train_student/student2/s/fold0") == "round 2" and round_of_job("manifest") is None
    table = per_round(jobs)
    assert table.index.tolist() == ["teachers", "round 1", "round 2"]
    assert table["total"].tolist() == [100.0, 95.0, 76.0] and table["jobs"].tolist() == [1, 3, 2]
