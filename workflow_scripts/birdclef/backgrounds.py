"""Which unlabelled soundscapes are set aside as backgrounds for the built validation set.

When the data has no labelled soundscapes, rule build_validation lays each fold's
held-out clips on recordings from ``train_soundscapes/``. Those recordings must not
also teach the models (pseudo-labels, BirdNET's soundscape scan, distillation), so a
share of them is set aside, chosen by the project's stable hash of the soundscape id
(``birdclef.shards``): the same files on every machine and run, and adding a
soundscape never moves another one across. ``is_background`` is the one place that
decides; ``rules/common.smk`` (the rules' inputs) and the rules' scripts ask it.

Stdlib only: Snakemake imports it at every start.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from birdclef.shards import shard_of

_RESOLUTION = 1_000_000  # the hash as a fraction in [0, 1), in steps of 1e-6
_SALT = "validation-background:"  # independent of the shard a soundscape falls in

P = TypeVar("P", str, Path)


def background_fraction(soundscape_id: str) -> float:
    """A stable number in [0, 1) for ``soundscape_id`` (its file stem)."""
    return shard_of(_SALT + soundscape_id, _RESOLUTION) / _RESOLUTION


def is_background(soundscape_id: str, share: float | None) -> bool:
    """Whether the soundscape ``soundscape_id`` is set aside as a background; ``share`` None: the builder is off."""
    return bool(share) and background_fraction(soundscape_id) < share


def split_backgrounds(paths: Iterable[P], share: float | None) -> tuple[list[P], list[P]]:
    """``paths`` (soundscape files) as (those left to pseudo-labels and BirdNET, those set aside), order kept."""
    kept: list[P] = []
    aside: list[P] = []
    for path in paths:
        (aside if is_background(Path(path).stem, share) else kept).append(path)
    return kept, aside
