"""Where things live: the input folder's recordings and the result paths between stages, built and parsed here only.

Stdlib only, like ``birdclef.settings``: Snakemake imports it at every start.

Result layout::

    results/models/<stage>/<model>/fold<k>/<file>     stage: teacher, student, student2, ...
    results/predictions/<stage>/<model>/validation.parquet
    results/export/<stage>/<model>/<file>

A trained model is named ``<stage>/<model>`` (an ensemble *member*); round n's
students are the stage ``student`` (n = 1) or ``student<n>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

STUDENT_STAGE_PATTERN = r"student(?:[2-9]|[1-9]\d+)?"
STAGE_PATTERN = rf"teacher|{STUDENT_STAGE_PATTERN}"
MODEL_NAME_PATTERN = r"[A-Za-z0-9_-]+"
_MEMBER = re.compile(rf"({STAGE_PATTERN})/({MODEL_NAME_PATTERN})")
_FOLD_FILE = re.compile(rf"(?:.*/)?models/({STAGE_PATTERN})/({MODEL_NAME_PATTERN})/fold(\d+)/[^/]+")


# --- Rounds and stages ----------------------------------------------------------------
def student_stage(round_: int) -> str:
    """The stage of round n's students: ``student`` for round 1, else ``student<n>``."""
    if round_ < 1:
        raise ValueError(f"rounds count from 1, got {round_}")
    return "student" if round_ == 1 else f"student{round_}"


def round_of(stage: str) -> int:
    """The pseudo-label round of a student stage (``student`` -> 1, ``student3`` -> 3)."""
    if not re.fullmatch(STUDENT_STAGE_PATTERN, stage):
        raise ValueError(f"{stage!r} is not a student stage")
    return 1 if stage == "student" else int(stage.removeprefix("student"))


# --- Members --------------------------------------------------------------------------
def parse_member(member: str) -> tuple[str, str]:
    """``"student/regnety_sed"`` -> ``("student", "regnety_sed")``; round n's students are ``student<n>``."""
    match = _MEMBER.fullmatch(member)
    if not match:
        raise ValueError(f"ensemble member {member!r} is not <teacher|student|student<round>>/<model name>")
    return match.group(1), match.group(2)


def default_members(teachers: Sequence[str], students: Sequence[str], student_stage: str = "student") -> list[str]:
    """Every teacher and the last round's students."""
    return [f"teacher/{m}" for m in teachers] + [f"{student_stage}/{m}" for m in students]


# --- Result paths ---------------------------------------------------------------------
def fold_dir(stage: str, model: str, fold: int | str) -> str:
    """``results/models/<stage>/<model>/fold<k>``: everything one training job writes."""
    return f"results/models/{stage}/{model}/fold{fold}"


def fold_files(stage: str, models: Iterable[str], folds: Iterable[int], name: str) -> list[str]:
    """One file of every fold of every model of a stage, model by model."""
    return [f"{fold_dir(stage, model, fold)}/{name}" for model in models for fold in folds]


def parse_fold_file(path: str | Path) -> tuple[str, str, int]:
    """``.../models/<stage>/<model>/fold<k>/<file>`` -> (stage, model, k); anything else is a ValueError."""
    match = _FOLD_FILE.fullmatch(PurePosixPath(Path(path).as_posix()).as_posix())
    if not match:
        raise ValueError(f"{path} is not a file of results/models/<stage>/<model>/fold<k>/")
    return match.group(1), match.group(2), int(match.group(3))


def by_model(paths: Iterable[str | Path]) -> dict[tuple[str, str], list[str]]:
    """Files of the layout ``results/models/<stage>/<name>/fold<k>/<file>`` grouped by (stage, name), in order."""
    groups: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        stage, name, _ = parse_fold_file(path)
        groups.setdefault((stage, name), []).append(str(path))
    return groups


def validation_prediction(stage: str, model: str) -> str:
    """A model's predictions (mean of its folds) on the validation windows."""
    return f"results/predictions/{stage}/{model}/validation.parquet"


def export_dir(member: str) -> str:
    """``results/export/<stage>/<model>``: a member's IR files and ``quant.json``."""
    parse_member(member)
    return f"results/export/{member}"


def member_of(path: str | Path) -> str:
    """The member (``<stage>/<model>``) whose folder holds ``path`` (``results/{export,predictions}/<member>/``)."""
    parts = Path(path).parts
    member = "/".join(parts[-3:-1])
    parse_member(member)
    return member


# --- The input folder -------------------------------------------------------------------
def list_audio_files(audio_root: Path) -> list[str]:
    """Every file under ``audio_root``, as a path relative to it, sorted.

    Hidden files (``.DS_Store``, Snakemake's ``.snakemake_timestamp``) are not
    recordings and are left out.
    """
    audio_root = Path(audio_root)
    if not audio_root.is_dir():
        return []
    names = (p.relative_to(audio_root) for p in audio_root.rglob("*") if p.is_file())
    return sorted(n.as_posix() for n in names if not any(part.startswith(".") for part in n.parts))


def audio_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """The audio files a rule was given, a folder (the demo's, which stands for its files) expanded to them."""
    files: list[Path] = []
    for path in map(Path, inputs):
        files += [path / name for name in list_audio_files(path)] if path.is_dir() else [path]
    return files
