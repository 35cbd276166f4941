"""Rule build_validation: labelled soundscapes built from each fold's held-out clips, when the data has none."""

import logging

import pandas as pd

from birdclef.background_screen import clean_windows
from birdclef.logs import run_logged
from birdclef.mel_shards import load_audio
from birdclef.plots import plot_built_soundscape
from birdclef.settings import ValidationBuildConfig
from birdclef.tables import write_csv
from birdclef.validation_set import build_validation_set, held_out_clips

log = logging.getLogger("build_validation")


def main(smk) -> None:
    cfg = ValidationBuildConfig.from_dict(smk.params.build)
    sr, slot_s = smk.params.sample_rate, smk.params.slot_s
    classes = pd.read_csv(smk.input.taxonomy)["primary_label"].astype(str).tolist()
    held_out = held_out_clips(pd.read_parquet(smk.input.clips), pd.read_csv(smk.input.folds))
    screen = pd.read_csv(smk.input.screen, keep_default_na=False)
    backgrounds = clean_windows(screen, cfg.background_max_confidence)
    log.info(
        "%d of %d background windows where BirdNET hears no taxonomy species at %.2f",
        len(backgrounds),
        len(screen),
        cfg.background_max_confidence,
    )
    log.info("%d held-out clips in %d folds; settings %s", len(held_out), held_out["fold"].nunique(), cfg.to_dict())
    solution, soundscapes, slots, under, first = build_validation_set(
        held_out, classes, backgrounds, cfg, slot_s, sr, smk.output.soundscapes, lambda path: load_audio(path, sr)
    )
    write_csv(solution, smk.output.solution, index=False)
    write_csv(soundscapes, smk.output.folds, index=False)
    write_csv(slots, smk.output.slots, index=False)
    write_csv(under, smk.output.backgrounds, index=False)
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
