"""The self-training ablation: each run's models per round on two halves of the validation soundscapes.

    .venv/bin/python benchmarks/pseudo_rounds.py --run old=/path/a --run mixup=/path/b \
        [--compare mixup:student/regnety_sed old:student/regnety_sed] [--bootstrap 2000] [--solution CSV]

Each ``--run NAME=FOLDER`` is a workflow folder (its ``results/``) whose models were scored on
the same validation soundscapes (given, or built from held-out clips: then each window is
predicted by the fold model that did not train on its clip). The soundscapes are split in two
halves, within each fold by a stable hash of the name: **choose** (where settings, such as the
number of rounds, are picked) and **report** (what the table's figures are). Prints, per run,
stage and model, the macro ROC-AUC on each half and the job time of the stage (for a student
stage: its pseudo_label job plus its training jobs, from ``results/benchmarks``). With
``--compare A B``, a bootstrap over the report half's soundscapes gives the 90 % interval of
score(A) - score(B). Prints markdown.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import cpu_line  # noqa: E402

from birdclef.layout import round_of  # noqa: E402
from birdclef.metrics import score_against_solution  # noqa: E402
from birdclef.runtimes import per_round, read_benchmarks  # noqa: E402

HALVES = ("choose", "report")


def soundscape_of(row_ids: pd.Series) -> pd.Series:
    """``<soundscape>_<end second>`` -> the soundscape."""
    return row_ids.str.rsplit("_", n=1).str[0]


def halves(soundscapes: pd.DataFrame) -> dict[str, str]:
    """soundscape -> "choose" or "report": alternate halves within each fold, in the order of a stable hash."""
    out = {}
    for _, group in soundscapes.groupby("fold"):
        names = sorted(group["soundscape"], key=lambda s: hashlib.sha1(s.encode()).hexdigest())
        out.update({name: HALVES[i % 2] for i, name in enumerate(names)})
    return out


def predictions_of(folder: Path) -> dict[str, Path]:
    """stage/model -> its validation predictions, for every model the run predicted."""
    found = sorted((folder / "results" / "predictions").glob("*/*/validation.parquet"))
    return {f"{p.parent.parent.name}/{p.parent.name}": p for p in found if p.parent.parent.name != "birdnet"}


def stage_seconds(folder: Path, stage: str) -> float:
    """Job seconds of a stage: its training jobs, plus its round's pseudo_label job for a student stage."""
    rounds = per_round(read_benchmarks(folder / "results" / "benchmarks"))
    step = "teachers" if stage == "teacher" else f"round {round_of(stage)}"
    return float(rounds["total"].get(step, float("nan")))


def score(predictions: pd.DataFrame, solution: pd.DataFrame) -> float:
    return score_against_solution(predictions, solution)[0]


def bootstrap(a: pd.DataFrame, b: pd.DataFrame, solution: pd.DataFrame, n: int, seed: int = 0) -> np.ndarray:
    """score(a) - score(b) on ``n`` resamples of the solution's soundscapes (with replacement)."""
    rng = np.random.default_rng(seed)
    names = soundscape_of(solution["row_id"])
    groups = {s: np.flatnonzero(names.to_numpy() == s) for s in names.unique()}
    keys = list(groups)
    a, b = a.set_index("row_id").loc[solution["row_id"]], b.set_index("row_id").loc[solution["row_id"]]
    diffs = []
    for _ in range(n):
        rows = np.concatenate([groups[keys[i]] for i in rng.integers(0, len(keys), len(keys))])
        # a resampled soundscape appears again under a new row id, so that rows stay distinct
        ids = [f"r{i}" for i in range(len(rows))]
        sol = solution.iloc[rows].assign(row_id=ids)
        diffs.append(
            score(a.iloc[rows].reset_index(drop=True).assign(row_id=ids), sol)
            - score(b.iloc[rows].reset_index(drop=True).assign(row_id=ids), sol)
        )
    return np.array(diffs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=FOLDER (the folder holding results/)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="RUN:stage/model twice: A - B, bootstrapped")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--solution", type=Path, help="given validation labels (default: the first run's built ones)")
    args = parser.parse_args()
    runs = {name: Path(folder) for name, folder in (r.split("=", 1) for r in args.run)}
    first = next(iter(runs.values())) / "results" / "validation"
    solution = pd.read_csv(args.solution or first / "validation_solution.csv")
    if args.solution:  # given validation soundscapes: no folds, one half-split over all of them
        soundscapes = pd.DataFrame({"soundscape": soundscape_of(solution["row_id"]).unique(), "fold": 0})
    else:
        soundscapes = pd.read_csv(first / "soundscape_folds.csv")
    half_of = halves(soundscapes)
    half = soundscape_of(solution["row_id"]).map(half_of)
    parts = {h: solution[half.to_numpy() == h].reset_index(drop=True) for h in HALVES}
    print(cpu_line())
    print(
        f"\nvalidation: {len(soundscapes)} soundscapes, {len(solution)} windows; "
        + ", ".join(f"{h} half {parts[h]['row_id'].str.rsplit('_', n=1).str[0].nunique()} soundscapes" for h in HALVES)
        + "\n"
    )
    print("| run | stage | model | macro ROC-AUC, choose half | macro ROC-AUC, report half | stage job time (s) |")
    print("|---|---|---|---|---|---|")
    tables = {}
    for run, folder in runs.items():
        for member, path in predictions_of(folder).items():
            stage, model = member.split("/")
            predictions = pd.read_parquet(path)
            tables[f"{run}:{member}"] = predictions
            row = [score(predictions, parts[h]) for h in HALVES]
            print(f"| {run} | {stage} | {model} | {row[0]:.4f} | {row[1]:.4f} | {stage_seconds(folder, stage):.0f} |")
    if args.compare:
        a, b = args.compare
        report = parts["report"]
        diff = score(tables[a], report) - score(tables[b], report)
        boot = bootstrap(tables[a], tables[b], report, args.bootstrap)
        low, high = np.percentile(boot, [5, 95])
        print(
            f"\n{a} - {b} on the report half: {diff:+.4f}; 90 % bootstrap interval over its soundscapes "
            f"[{low:+.4f}, {high:+.4f}] ({args.bootstrap} resamples); "
            + ("excludes zero" if low > 0 or high < 0 else "includes zero")
        )


if __name__ == "__main__":
    main()
