import pandas as pd

from birdclef.plots import (
    plot_class_scores,
    plot_data_summary,
    plot_duplicates,
    plot_ensemble,
    plot_export,
    plot_model_scores,
    plot_pseudo_labels,
    plot_quality_filter,
    plot_rounds,
    plot_runtimes,
    plot_training,
)

PNG = b"\x89PNG"


def clips(n_classes: int = 30) -> pd.DataFrame:
    rows = []
    for k in range(n_classes):
        for i in range(4):
            known = k % 2 == 0
            rows.append(
                {
                    "clip_id": f"c{k:02d}/{i}",
                    "primary_label": f"c{k:02d}",
                    "birdnet_knows_species": known,
                    "own_confidence": 0.2 * i if known else float("nan"),
                    "active_fraction": 0.25 * i,
                    "keep": i > 0,
                    "reason": "kept: class minimum (x)" if i == 1 else "x",
                    "dedup_keep": i != 3 or k % 3 != 0,
                }
            )
    return pd.DataFrame(rows)


def test_quality_filter_figure(tmp_path):
    plot_quality_filter(clips(), tmp_path / "q.png")
    assert (tmp_path / "q.png").read_bytes()[:4] == PNG


def test_duplicates_figure_with_and_without_duplicates(tmp_path):
    c = clips()
    dups = pd.DataFrame({"clip_id": ["c00/3"], "kept_clip_id": ["c00/2"], "group": ["c00/2"], "similarity": [0.95]})
    plot_duplicates(c, dups, pd.Series([0.1, 0.2, 0.95]), tmp_path / "d.png")
    plot_duplicates(c.assign(dedup_keep=True), dups.iloc[:0], pd.Series([], dtype=float), tmp_path / "none.png")
    for name in ("d.png", "none.png"):
        assert (tmp_path / name).read_bytes()[:4] == PNG


def test_training_figure(tmp_path):
    history = pd.DataFrame(
        {"epoch": [1, 2, 3], "train_loss": [0.6, 0.4, 0.3], "val_loss": [0.5, 0.45, 0.5], "val_auc": [0.6, 0.8, 0.75]}
    )
    plot_training([history, history.assign(val_auc=[0.5, 0.7, 0.9])], [2, 3], "teacher m: 0.8", tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == PNG


def test_model_scores_figure(tmp_path):
    scores = pd.DataFrame({"stage": ["teacher", "student"], "model": ["a", "a"], "macro_roc_auc": [0.7, 0.8]})
    plot_model_scores(scores, tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == PNG


def test_pseudo_label_figure(tmp_path):
    labels = pd.DataFrame({"row_id": ["a_5", "a_10"], "keep": [True, False], "max_prob": [0.8, 0.2], "x": [0.8, 0.1]})
    plot_pseudo_labels(labels.assign(y=[0.3, 0.2]), ["x", "y"], 0.5, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == PNG


def test_ensemble_figure_with_and_without_a_cross_validated_score(tmp_path):
    result = {
        "method": "hill_climb",
        "space": "prob",
        "fitted_on": "validation soundscapes",
        "members": {"teacher/a": {"weight": 0.7, "score": 0.8}, "student/a": {"weight": 0.3, "score": 0.75}},
        "blend_score": 0.82,
        "cv": {"mean": 0.79},
    }
    plot_ensemble(result, tmp_path / "e.png")
    plot_ensemble({**result, "cv": {"mean": float("nan")}}, tmp_path / "f.png")
    assert (tmp_path / "e.png").read_bytes()[:4] == (tmp_path / "f.png").read_bytes()[:4] == PNG


def test_data_summary_figure_with_and_without_rejected_files(tmp_path):
    c = clips().assign(duration_s=5.0)
    rejected = pd.DataFrame(
        {"filename": ["a.ogg", "b.ogg"], "train_csv_row": [3, None], "reason": ["corrupt: x", "file is not listed"]}
    )
    plot_data_summary(c, rejected, tmp_path / "s.png")
    plot_data_summary(c, rejected.iloc[:0], tmp_path / "none.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == (tmp_path / "none.png").read_bytes()[:4] == PNG


def test_class_scores_figure(tmp_path):
    table = pd.DataFrame({"blend": [0.9, 0.6, float("nan")], "student/a": [0.8, 0.7, 0.5]}, index=["x", "y", "z"])
    plot_class_scores(table, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == PNG


def test_export_figure(tmp_path):
    quant = {
        "student/a": {
            "scores": {"torch": 0.8, "fp32": 0.8, "int8": 0.79},
            "windows_per_s": {"torch": 50, "fp32": 100, "int8": 400},
            "choice": "int8",
        },
        "teacher/b": {
            "scores": {"torch": 0.7, "fp32": 0.7, "int8": 0.6},
            "windows_per_s": {"torch": 40, "fp32": 90, "int8": 300},
            "choice": "fp32",
        },
    }
    plot_export(quant, tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes()[:4] == PNG


def test_runtimes_figure_with_rounds_and_the_rounds_figure(tmp_path):
    jobs = pd.DataFrame(
        {
            "rule": ["train_teacher", "pseudo_label", "train_student"],
            "job": ["train_teacher/t/fold0", "pseudo_label/round1", "train_student/student/t/fold0"],
            "seconds": [300.0, 10.0, 250.0],
        }
    )
    plot_runtimes(jobs, tmp_path / "r.png")
    plot_runtimes(jobs.assign(job=["m", "t/0", "t/1"]), tmp_path / "no_rounds.png")  # no job of a round
    assert (tmp_path / "r.png").read_bytes()[:4] == PNG == (tmp_path / "no_rounds.png").read_bytes()[:4]
    scores = pd.DataFrame(
        {
            "stage": ["teacher", "student", "student2", "birdnet"],
            "model": ["t", "t", "t", "zero_shot"],
            "macro_roc_auc": [0.7, 0.75, 0.78, 0.6],
        }
    )
    labels = [pd.DataFrame({"max_prob": [0.1, 0.6, 0.9]}), pd.DataFrame({"max_prob": [0.05, 0.5, 0.85]})]
    plot_rounds(scores, labels, tmp_path / "rounds.png")
    assert (tmp_path / "rounds.png").read_bytes()[:4] == PNG


def test_members_against_zero_shot_figure(tmp_path):
    from birdclef.plots import plot_against_zero_shot

    classes = [f"c{k}" for k in range(6)]
    per_class = pd.DataFrame(
        {"birdnet/zero_shot": [0.6, 0.7, 0.8, 0.5, 0.5, 0.5], "teacher/head": [0.9, 0.8, 0.95, 0.7, 0.6, 0.85]},
        index=pd.Index(classes, name="class"),
    )
    plot_against_zero_shot(per_class, ["teacher/head"], classes[:3], tmp_path / "z.png")
    assert (tmp_path / "z.png").read_bytes()[:4] == PNG
