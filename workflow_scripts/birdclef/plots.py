"""Figures for the report: one function per figure, each writes a PNG.

matplotlib runs headless (Agg); a figure is sized to stay readable with a
hundred-plus classes, which is what real BirdCLEF data has.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from birdclef import layout  # noqa: E402
from birdclef.atomic import atomic_path  # noqa: E402
from birdclef.runtimes import per_round as runtimes_per_round  # noqa: E402
from birdclef.runtimes import per_rule as runtimes_per_rule  # noqa: E402

KEPT, RESCUED, DROPPED = "#2a9d8f", "#e9c46a", "#e76f51"


def _save(fig: plt.Figure, path: str | Path) -> None:
    try:
        with atomic_path(path) as tmp:  # the same name inside a hidden folder: savefig picks PNG by the suffix
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def _class_height(n_classes: int) -> float:
    return max(3.0, 0.18 * n_classes + 1.0)


def plot_quality_filter(clips: pd.DataFrame, path: str | Path) -> None:
    """Score distributions (BirdNET's own-species confidence; band activity) and kept/dropped per class.

    Clips kept only to meet the class minimum have a colour of their own.
    """
    per_class = clips.groupby("primary_label")["keep"].agg(kept="sum", total="size").sort_index(ascending=False)
    fig = plt.figure(figsize=(12, _class_height(len(per_class))), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[1.2, 1])
    panels = [
        ("own_confidence", "BirdNET confidence for the clip's own species", "clips of species BirdNET knows"),
        ("active_fraction", "fraction of 3 s segments active above 2 kHz", "clips of species BirdNET does not know"),
    ]
    for row, (col, xlabel, title) in enumerate(panels):
        ax = fig.add_subplot(grid[row, 0])
        subset = clips[clips["birdnet_knows_species"] == (col == "own_confidence")]
        rescued = subset["reason"].str.startswith("kept: class minimum")
        groups = [subset["keep"] & ~rescued, rescued, ~subset["keep"]]
        ax.hist(
            [subset.loc[g, col].dropna() for g in groups],
            bins=np.linspace(0, 1, 21),
            stacked=True,
            color=[KEPT, RESCUED, DROPPED],
            label=["kept", "kept: class minimum", "dropped"],
        )
        ax.set(xlabel=xlabel, ylabel="clips", title=f"{title} ({len(subset)})")
        ax.legend()
    ax = fig.add_subplot(grid[:, 1])
    y = np.arange(len(per_class))
    ax.barh(y, per_class["kept"], color=KEPT, label="kept")
    ax.barh(y, per_class["total"] - per_class["kept"], left=per_class["kept"], color=DROPPED, label="dropped")
    ax.set_yticks(y, per_class.index, fontsize=7 if len(per_class) > 40 else 9)
    ax.set(xlabel="clips", title=f"kept {int(per_class['kept'].sum())} of {int(per_class['total'].sum())} clips")
    ax.legend(loc="lower right")
    fig.suptitle("Quality filter")
    _save(fig, path)


def plot_duplicates(
    clips: pd.DataFrame, duplicates: pd.DataFrame, pairs_similarity: pd.Series, path: str | Path
) -> None:
    """Similarity of flagged pairs against all compared pairs, and clips set aside per class."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, max(3.5, _class_height(clips["primary_label"].nunique()) / 2)))
    bins = np.linspace(-0.2, 1, 49)
    ax1.hist(pairs_similarity.dropna().clip(-0.2, 1), bins=bins, color="#8d99ae", label="compared pairs")
    ax1.hist(duplicates["similarity"].dropna().clip(-0.2, 1), bins=bins, color=DROPPED, label="duplicates set aside")
    ax1.set(xlabel="content similarity", ylabel="pairs", title="fingerprint similarity")
    if pairs_similarity.notna().any():
        ax1.set_yscale("log")
    ax1.legend()
    per_class = clips.assign(dup=~clips["dedup_keep"]).groupby("primary_label")["dup"].sum()
    per_class = per_class[per_class > 0].sort_index(ascending=False)
    if len(per_class):
        ax2.barh(np.arange(len(per_class)), per_class.to_numpy(), color=DROPPED)
        ax2.set_yticks(np.arange(len(per_class)), per_class.index, fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no duplicates found", ha="center", va="center", transform=ax2.transAxes)
    ax2.set(
        xlabel="clips set aside",
        title=f"{len(duplicates)} duplicate clip(s) in {duplicates['group'].nunique()} group(s)",
    )
    fig.suptitle("Duplicates")
    _save(fig, path)


def plot_training(histories: list[pd.DataFrame], best_epochs: list[int], title: str, path: str | Path) -> None:
    """Loss (train and validation) and validation macro ROC-AUC per epoch, one colour per fold."""
    fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    colours = plt.get_cmap("tab10")
    for k, (history, best) in enumerate(zip(histories, best_epochs, strict=True)):
        c = colours(k % 10)
        loss_ax.plot(history["epoch"], history["train_loss"], color=c, label=f"fold {k} train")
        loss_ax.plot(history["epoch"], history["val_loss"], color=c, linestyle="--", label=f"fold {k} validation")
        auc_ax.plot(history["epoch"], history["val_auc"], color=c, marker=".", label=f"fold {k}")
        at_best = history.loc[history["epoch"] == best, "val_auc"]
        auc_ax.plot([best] * len(at_best), at_best, "o", color=c, markersize=9, markerfacecolor="none")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss (solid: training, dashed: validation)")
    auc_ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    auc_ax.set(xlabel="epoch", ylabel="macro ROC-AUC", title="validation macro ROC-AUC (circle: kept epoch)")
    auc_ax.legend(fontsize="small", loc="lower right")
    fig.suptitle(title)
    _save(fig, path)


def plot_pseudo_labels(labels: pd.DataFrame, classes: list[str], min_max_prob: float, path: str | Path) -> None:
    """Distribution of each window's highest probability, and the windows each class gains."""
    kept = labels[labels["keep"]]
    top = kept[classes].fillna(-1.0).idxmax(axis=1) if len(kept) else pd.Series(dtype=str)
    gained = top.value_counts().reindex(classes, fill_value=0).sort_index(ascending=False)
    fig = plt.figure(figsize=(12, _class_height(len(classes))), layout="constrained")
    hist_ax, class_ax = fig.subplots(1, 2, width_ratios=[1.2, 1])
    hist_ax.hist(labels["max_prob"], bins=np.linspace(0, 1, 41), color=KEPT)
    hist_ax.axvline(min_max_prob, color=DROPPED, linestyle="--", label=f"kept at >= {min_max_prob:g}")
    hist_ax.set(
        xlabel="highest class probability of the window",
        ylabel="windows",
        title=f"{len(kept)} of {len(labels)} windows kept",
    )
    hist_ax.legend()
    class_ax.barh(gained.index, gained.to_numpy(), color=KEPT)
    class_ax.set(xlabel="kept windows", title="kept windows by their most likely class")
    class_ax.tick_params(axis="y", labelsize="small")
    _save(fig, path)


def plot_model_scores(scores: pd.DataFrame, path: str | Path) -> None:
    """Macro ROC-AUC per model (columns stage, model, macro_roc_auc), teachers and students in their own colours."""
    colours = {"teacher": "#264653", "student": KEPT}
    order = scores.sort_values(["stage", "model"], ascending=False)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(order)), layout="constrained")
    labels = [f"{s} {m}" for s, m in zip(order["stage"], order["model"], strict=True)]
    ax.barh(labels, order["macro_roc_auc"], color=[colours.get(s, RESCUED) for s in order["stage"]])
    for y, v in enumerate(order["macro_roc_auc"]):
        ax.text(v, y, f" {v:.3f}", va="center")
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xlim=(0, 1.08), xlabel="macro ROC-AUC on the validation soundscapes", title="models on labelled soundscapes")
    _save(fig, path)


def plot_ensemble(result: dict, path: str | Path) -> None:
    """Each member's weight and own score beside the blend's in-sample and cross-validated scores (weights.json)."""
    members = list(result["members"])
    weights = [result["members"][m]["weight"] for m in members]
    scores = [result["members"][m]["score"] for m in members]
    fig, (ax_w, ax_s) = plt.subplots(1, 2, figsize=(11, 1.6 + 0.45 * len(members)), layout="constrained", sharey=True)
    ax_w.barh(members, weights, color="#264653")
    for y, w in enumerate(weights):
        ax_w.text(w, y, f" {w:.2f}", va="center")
    ax_w.set(xlim=(0, 1.15), xlabel="weight", title=f"weights ({result['method']}, {result['space']} space)")
    ax_s.barh(members, scores, color=KEPT)
    for y, v in enumerate(scores):
        ax_s.text(v, y, f" {v:.3f}", va="center")
    ax_s.axvline(result["blend_score"], color="#e76f51", label=f"blend, in-sample {result['blend_score']:.3f}")
    cv = result["cv"]["mean"]
    if np.isfinite(cv):
        ax_s.axvline(cv, color="#e76f51", linestyle="--", label=f"blend, cross-validated {cv:.3f}")
    ax_s.set(xlim=(0, 1.08), xlabel=f"macro ROC-AUC on {result.get('fitted_on', 'the fitting rows')}", title="scores")
    ax_s.legend(loc="lower left", fontsize=8)
    _save(fig, path)


def plot_data_summary(clips: pd.DataFrame, rejected: pd.DataFrame, path: str | Path) -> None:
    """Usable clips and hours of audio per class, and the files set aside by reason (the manifest)."""
    per_class = clips.groupby("primary_label").agg(clips=("clip_id", "size"), seconds=("duration_s", "sum"))
    per_class = per_class.sort_index(ascending=False)
    reasons = rejected["reason"].astype(str).str.split(":").str[0].value_counts().sort_values()
    fig = plt.figure(figsize=(12, _class_height(len(per_class))), layout="constrained")
    class_ax, reason_ax = fig.subplots(1, 2, width_ratios=[1.2, 1])
    class_ax.barh(per_class.index, per_class["clips"], color=KEPT)
    for y, (n, s) in enumerate(zip(per_class["clips"], per_class["seconds"], strict=True)):
        class_ax.text(n, y, f" {s / 60:.1f} min", va="center", fontsize="x-small")
    class_ax.tick_params(axis="y", labelsize=7 if len(per_class) > 40 else 9)
    hours = clips["duration_s"].sum() / 3600
    class_ax.set(xlabel="usable clips (label: minutes of audio)", title=f"{len(clips)} clips, {hours:.2f} h of audio")
    if len(reasons):
        reason_ax.barh(reasons.index, reasons.to_numpy(), color=DROPPED)
        for y, n in enumerate(reasons.to_numpy()):
            reason_ax.text(n, y, f" {n}", va="center")
    else:
        reason_ax.text(0.5, 0.5, "no file set aside", ha="center", va="center", transform=reason_ax.transAxes)
    reason_ax.set(xlabel="rows or files", title=f"{len(rejected)} set aside, by reason (rejected.csv)")
    fig.suptitle(f"Training data: {per_class.shape[0]} classes")
    _save(fig, path)


def plot_class_scores(per_class: pd.DataFrame, path: str | Path) -> None:
    """ROC-AUC per class (rows) of the blend beside its best single member (columns 'blend' and a member's name)."""
    order = per_class.sort_values("blend")
    fig, ax = plt.subplots(figsize=(9, _class_height(len(order))), layout="constrained")
    y = np.arange(len(order))
    for column, colour, marker in zip(order.columns, ["#e76f51", "#264653"], ["o", "|"], strict=False):
        mean = order[column].mean()
        ax.scatter(order[column], y, color=colour, marker=marker, s=40, label=f"{column} (mean {mean:.3f})")
    ax.set_yticks(y, order.index, fontsize=7 if len(order) > 40 else 9)
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xlim=(0, 1.02), xlabel="ROC-AUC", title="per class, on the rows the weights were fitted on")
    ax.legend(loc="lower right", fontsize="small")
    _save(fig, path)


def plot_export(quant: dict[str, dict], path: str | Path) -> None:
    """Each exported member (quant.json): macro ROC-AUC and windows/s of PyTorch, the FP32 IR and the INT8 IR."""
    members = list(quant)
    kinds, colours = ["torch", "fp32", "int8"], ["#8d99ae", "#264653", KEPT]
    fig, (score_ax, speed_ax) = plt.subplots(
        1, 2, figsize=(12, 1.8 + 0.9 * len(members)), layout="constrained", sharey=True
    )
    y = np.arange(len(members))
    height = 0.8 / len(kinds)
    for i, (kind, colour) in enumerate(zip(kinds, colours, strict=True)):
        scores = [quant[m]["scores"][kind] for m in members]
        speeds = [quant[m]["windows_per_s"][kind] for m in members]
        offset = y + (i - 1) * height
        score_ax.barh(offset, scores, height=height, color=colour, label=kind)
        speed_ax.barh(offset, speeds, height=height, color=colour, label=kind)
        for yy, s, v in zip(offset, scores, speeds, strict=True):
            score_ax.text(s, yy, f" {s:.4f}", va="center", fontsize="small")
            speed_ax.text(v, yy, f" {v:.0f}", va="center", fontsize="small")
    labels = [f"{m}\nchose {quant[m]['choice'].upper()}" for m in members]
    score_ax.set_yticks(y, labels)
    lo = min(min(q["scores"].values()) for q in quant.values())
    score_ax.set(xlim=(max(0.0, lo - 0.05), 1.02), xlabel="macro ROC-AUC", title="accuracy (the INT8 gate)")
    speed_ax.set(xlabel="windows per second, 2 threads", title="speed inside the export job")
    speed_ax.set_xlim(0, 1.2 * max(max(q["windows_per_s"].values()) for q in quant.values()))
    speed_ax.legend(loc="lower right", fontsize="small")
    fig.suptitle("FP32 against INT8")
    _save(fig, path)


def plot_runtimes(jobs: pd.DataFrame, path: str | Path) -> None:
    """Wall seconds per rule (columns rule, job, seconds): the sum over its jobs, and its slowest job.

    Beside it, when the run trained any: the teachers' and each pseudo-label round's job seconds.
    """
    per_rule = runtimes_per_rule(jobs).iloc[::-1]  # the slowest rule at the top
    rounds = runtimes_per_round(jobs)
    fig = plt.figure(figsize=(14 if len(rounds) else 10, 1.5 + 0.35 * len(per_rule)), layout="constrained")
    ax, round_ax = fig.subplots(1, 2, width_ratios=[2.5, 1]) if len(rounds) else (fig.subplots(), None)
    y = np.arange(len(per_rule))
    ax.barh(y, per_rule["total"], color="#264653", label="all jobs")
    ax.barh(y, per_rule["slowest"], color=RESCUED, height=0.4, label="slowest job")
    for yy, (total, n) in enumerate(zip(per_rule["total"], per_rule["jobs"], strict=True)):
        ax.text(total, yy, f" {total:.0f} s, {n} job{'s' if n > 1 else ''}", va="center", fontsize="small")
    ax.set_yticks(y, per_rule.index)
    ax.set_xscale("log")
    ax.set(xlabel="wall seconds (log scale)", title=f"per-rule runtimes, {jobs['seconds'].sum() / 60:.1f} job-minutes")
    ax.legend(loc="lower right", fontsize="small")
    if round_ax is not None:
        labels = list(rounds.index)[::-1]
        round_ax.barh(labels, rounds["total"].to_numpy()[::-1], color=KEPT)
        for yy, total in enumerate(rounds["total"].to_numpy()[::-1]):
            round_ax.text(total, yy, f" {total / 60:.1f} min", va="center", fontsize="small")
        round_ax.set(xlabel="job seconds", title="teachers, then each round\n(its pseudo_label and students)")
    _save(fig, path)


def plot_rounds(scores: pd.DataFrame, labels: list[pd.DataFrame], path: str | Path) -> None:
    """Self-training round by round: each model's score per stage, and each round's pseudo-label confidence.

    ``scores``: score_models' table (stage, model, macro_roc_auc); ``labels``: round 1, 2, ...'s pseudo-label tables.
    """
    fig = plt.figure(figsize=(13, 4.8), layout="constrained")
    score_ax, conf_ax = fig.subplots(1, 2)
    stages = ["teacher", *(layout.student_stage(r) for r in range(1, len(labels) + 1))]
    trained = scores[scores["stage"].isin(stages)]
    for model, rows in trained.groupby("model"):
        rows = rows.set_index("stage").reindex(stages)
        score_ax.plot(range(len(stages)), rows["macro_roc_auc"], marker="o", label=model)
    for _, row in scores[~scores["stage"].isin(stages)].iterrows():  # BirdNET zero-shot, say: a level, not a line
        score_ax.axhline(row["macro_roc_auc"], color="grey", linestyle=":", label=f"{row['stage']} {row['model']}")
    score_ax.set_xticks(range(len(stages)), ["teachers", *(f"round {r}" for r in range(1, len(labels) + 1))])
    score_ax.set(ylabel="macro ROC-AUC on the validation windows", title="score per round (one line per model)")
    score_ax.legend(fontsize="small")
    bins = np.linspace(0, 1, 41)
    for r, table in enumerate(labels, start=1):
        conf_ax.hist(table["max_prob"], bins=bins, histtype="step", linewidth=1.5, label=f"round {r}")
    conf_ax.set(
        xlabel="highest class probability of a window (after the round's power)",
        ylabel="windows",
        yscale="log",
        title="pseudo-label confidence per round",
    )
    conf_ax.legend(fontsize="small")
    _save(fig, path)


def plot_built_soundscape(
    audio: np.ndarray, sr: int, slot_s: float, slot_labels: list[list[str]], title: str, path: str | Path
) -> None:
    """A built validation soundscape's spectrogram, its slots marked and each slot's labels (the solution's 1s) on it.

    ``slot_labels``: per slot, its positives (primary first); an empty list is a background-only slot.
    """
    fig, ax = plt.subplots(figsize=(14, 4.5), layout="constrained")
    if len(audio):
        ax.specgram(audio, NFFT=1024, Fs=sr, noverlap=512, cmap="magma", scale="dB", vmin=-130)
    top = sr / 2
    for k, labels in enumerate(slot_labels):
        start = k * slot_s
        ax.axvline(start, color="white", linewidth=0.8, alpha=0.7)
        text = "\n".join([f"{labels[0]} (primary)", *labels[1:]]) if labels else "background only"
        ax.text(
            start + 0.1 * slot_s,
            0.97 * top,
            text,
            va="top",
            fontsize=7,
            color="black" if labels else "dimgrey",
            style="normal" if labels else "italic",
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.5},
        )
    ax.set(
        xlim=(0, len(slot_labels) * slot_s),
        ylim=(0, top),
        xlabel="time (s)",
        ylabel="frequency (Hz)",
        title=title,
    )
    _save(fig, path)


def plot_against_zero_shot(per_class: pd.DataFrame, members: list[str], known: list[str], path: str | Path) -> None:
    """Per class ROC-AUC of each embedding member (y) against BirdNET zero-shot (x), on the classes BirdNET knows.

    ``per_class``: class x member table (score_models' models_per_class.csv) with a ``birdnet/zero_shot`` column.
    The classes BirdNET does not know are shown as a strip of the members' scores on the left.
    """
    fig, (ax, ax_unknown) = plt.subplots(
        1, 2, figsize=(10, 5), layout="constrained", gridspec_kw={"width_ratios": [3, 1]}, sharey=True
    )
    zero = per_class["birdnet/zero_shot"]
    unknown = [c for c in per_class.index if c not in set(known)]
    for k, member in enumerate(members):
        colour = plt.cm.tab10(k % 10)
        ax.scatter(zero.reindex(known), per_class[member].reindex(known), s=18, color=colour, label=member)
        jitter = np.random.default_rng(k).uniform(-0.3, 0.3, len(unknown))
        ax_unknown.scatter(k + jitter, per_class[member].reindex(unknown), s=12, color=colour)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
    ax.set(
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        xlabel="BirdNET zero-shot ROC-AUC",
        ylabel="member ROC-AUC",
        title=f"{len(known)} classes BirdNET knows",
    )
    ax.legend(loc="lower right", fontsize=8)
    ax_unknown.set(xticks=range(len(members)), xticklabels=members, title=f"{len(unknown)} it does not know")
    ax_unknown.tick_params(axis="x", rotation=30)
    _save(fig, path)
