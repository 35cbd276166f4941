"""Rule build_validation: labelled soundscapes built from each fold's held-out clips, when the data has none."""

import logging
from pathlib import Path

import pandas as pd

from birdclef.backgrounds import split_backgrounds
from birdclef.layout import list_audio_files
from birdclef.logs import run_logged
from birdclef.mel_shards import load_audio
from birdclef.plots import plot_built_soundscape
from birdclef.settings import ValidationBuildConfig
from birdclef.tables import write_csv
from birdclef.validation_set import build_validation_set, held_out_clips

log = logging.getLogger("build_validation")


def background_files(inputs: list[str], share: float) -> list[Path]:
    """The soundscapes set aside as backgrounds among ``inputs`` (files; the demo's folder stands for its files)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        paths += [item / name for name in list_audio_files(item)] if item.is_dir() else [item]
    return split_backgrounds(paths, share)[1]


def main(smk) -> None:
    cfg = ValidationBuildConfig.from_dict(smk.params.build)
    sr, slot_s = smk.params.sample_rate, smk.params.slot_s
    classes = pd.read_csv(smk.input.taxonomy)["primary_label"].astype(str).tolist()
    held_out = held_out_clips(pd.read_parquet(smk.input.clips), pd.read_csv(smk.input.folds))
    backgrounds = background_files(smk.input.backgrounds, cfg.background_share)
    log.info("%d held-out clips in %d folds; settings %s", len(held_out), held_out["fold"].nunique(), cfg.to_dict())
    solution, soundscapes, slots, first = build_validation_set(
        held_out, classes, backgrounds, cfg, slot_s, sr, smk.output.soundscapes, lambda path: load_audio(path, sr)
    )
    write_csv(solution, smk.output.solution, index=False)
    write_csv(soundscapes, smk.output.folds, index=False)
    write_csv(slots, smk.output.slots, index=False)
    log.info(
        "%d soundscapes, %d windows (%d with a clip), %d of %d classes with a positive",
        len(soundscapes),
        len(solution),
        len(slots),
        int((solution[classes].sum() > 0).sum()),
        len(classes),
    )
    example = soundscapes.iloc[0]
    labels = slots[slots["soundscape"] == example["soundscape"]].set_index("slot")["labels"]
    title = f"{example['soundscape']}: {example['n_clips']} of fold {example['fold']}'s held-out clips"
    title += f" in {example['n_slots']} slots"
    plot_built_soundscape(
        first, sr, slot_s, [labels.get(k, "").split() for k in range(example["n_slots"])], title, smk.output.plot
    )


run_logged(snakemake.log[0], main, snakemake)  # noqa: F821 (injected by Snakemake)
