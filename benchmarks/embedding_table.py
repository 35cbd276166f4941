"""The pretrained-knowledge table of a run: each model, BirdNET zero-shot and the blend on the validation windows.

    .venv/bin/python benchmarks/embedding_table.py [--results results] [--config configs/nips4b.yaml]

Reads what the run wrote: ``scores/models.csv`` (each model's macro ROC-AUC on the
validation windows, on all classes and on the classes BirdNET knows; on built validation
soundscapes every window is predicted by the fold model that did not train on its clip),
``ensemble/weights.json`` (the blend's cross-validated score, folds by soundscape, beside
the best single member chosen the same way), and recomputes that cross-validation on the
classes BirdNET knows (the same members, folds and fitting). Then the time of each rule
(sum of its jobs' wall seconds, from ``runtimes.csv``). Prints markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import cpu_line  # noqa: E402

from birdclef.ensemble import cross_validated_score  # noqa: E402
from birdclef.layout import parse_member, validation_prediction  # noqa: E402
from birdclef.members import validation_rows  # noqa: E402
from birdclef.settings import EnsembleConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--config", type=Path, default=None, help="the run's --configfile, for the ensemble settings")
    parser.add_argument("--solution", type=Path, default=None, help="given validation labels (default: the built ones)")
    args = parser.parse_args()
    res = args.results
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())["ensemble"]
    if args.config:
        cfg.update(yaml.safe_load(args.config.read_text()).get("ensemble", {}))
    ens_cfg = EnsembleConfig.from_dict({k: v for k, v in cfg.items() if k != "members"})
    print(cpu_line())

    scores = pd.read_csv(res / "scores" / "models.csv")
    known = json.loads((res / "predictions/birdnet/zero_shot/known_classes.json").read_text())
    weights = json.loads((res / "ensemble" / "weights.json").read_text())
    members = list(weights["members"])
    solution_path = args.solution or res / "validation" / "validation_solution.csv"
    solution = pd.read_csv(solution_path)
    n_known = len([c for c in known["known_classes"] if c in solution.columns])

    print(f"\nvalidation windows: {len(solution)}; classes: {known['n_classes']}, of which BirdNET knows {n_known}\n")
    print("| model | macro ROC-AUC, classes BirdNET knows | macro ROC-AUC, all classes |")
    print("|---|---|---|")
    for row in scores.itertuples(index=False):
        print(f"| {row.stage}/{row.model} | {row.macro_roc_auc_birdnet_known:.4f} | {row.macro_roc_auc:.4f} |")

    predictions = {m: pd.read_parquet(res.parent / validation_prediction(*parse_member(m))) for m in members}
    probs, truth, groups, classes = validation_rows(predictions, solution)
    cols = [k for k, c in enumerate(classes) if c in set(known["known_classes"])]
    nan = {"mean": float("nan"), "best_single": {"mean": float("nan")}}
    cv_known = (
        cross_validated_score([p[:, cols] for p in probs.values()], truth[:, cols], groups, ens_cfg, names=list(probs))
        if cols
        else nan
    )
    cv = weights["cv"]
    print(
        f"| blend of {len(members)} ({ens_cfg.method}), cross-validated over {cv['n_folds']} folds of soundscapes "
        f"| {cv_known['mean']:.4f} | {cv['mean']:.4f} |"
    )
    print(
        f"| best single member, chosen on each fold's training soundscapes, same folds "
        f"| {cv_known['best_single']['mean']:.4f} | {cv['best_single']['mean']:.4f} |"
    )
    print("\nweights: " + ", ".join(f"{m} {e['weight']:.2f}" for m, e in weights["members"].items()))

    runtimes = pd.read_csv(res / "runtimes.csv")
    per_rule = runtimes.groupby("rule")[["seconds", "cpu_seconds"]].sum().sort_values("seconds", ascending=False)
    print("\n| rule | jobs | wall s (sum of jobs) | CPU s |\n|---|---|---|---|")
    counts = runtimes.groupby("rule").size()
    for rule, row in per_rule.iterrows():
        print(f"| {rule} | {counts[rule]} | {row['seconds']:.0f} | {row['cpu_seconds']:.0f} |")


if __name__ == "__main__":
    main()
