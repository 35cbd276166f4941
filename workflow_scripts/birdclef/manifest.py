"""The manifest: every training row and every audio file, kept or set aside with a reason.

Every row of ``train.csv`` and every file under ``train_audio/`` ends in exactly
one of two tables: ``clips`` (usable, one row per clip) or ``rejected`` (with the
reason in words). Nothing is dropped silently.
"""

from __future__ import annotations

import ast
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from birdclef.audio import AudioCheck, check_audio
from birdclef.layout import list_audio_files

log = logging.getLogger(__name__)

CLIP_COLUMNS = [
    "clip_id",
    "filename",
    "path",
    "primary_label",
    "secondary_labels",
    "author",
    "duration_s",
    "sample_rate",
    "channels",
    "frames",
    "latitude",
    "longitude",
    "rating",
]
REJECTED_COLUMNS = ["filename", "train_csv_row", "reason"]
REQUIRED_TRAIN_COLUMNS = ("primary_label", "filename")


@dataclass(frozen=True)
class ManifestResult:
    clips: pd.DataFrame
    rejected: pd.DataFrame
    n_rows: int  # rows in train.csv
    n_files: int  # files found under train_audio/


def parse_label_list(text: object) -> list[str]:
    """Kaggle's ``secondary_labels`` cell (``"['a', 'b']"``) as a list, parsed safely."""
    if text is None or (isinstance(text, float) and pd.isna(text)) or str(text).strip() in ("", "[]"):
        return []
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        raise ValueError(f"cannot parse label list {text!r}") from None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"label list {text!r} is not a list of strings")
    return [v.strip() for v in value if v.strip()]


def safe_audio_path(audio_root: Path, filename: str) -> Path | None:
    """The file's path if ``filename`` stays inside ``audio_root``, else None (never opened)."""
    if not filename or Path(filename).is_absolute():
        return None
    root = audio_root.resolve()
    path = (root / filename).resolve()
    return path if path.is_relative_to(root) else None


def build_manifest(
    data_dir: str | Path,
    min_duration_s: float = 0.5,
    workers: int = 1,
) -> ManifestResult:
    """Read ``train.csv``, ``taxonomy.csv`` and decode every referenced file in full.

    Raises ``ValueError`` only when the dataset as a whole is unusable (no
    ``train.csv``, missing columns); a bad row or file is rejected and the run goes on.
    """
    data_dir = Path(data_dir)
    audio_root = data_dir / "train_audio"
    for name in ("train.csv", "taxonomy.csv"):
        if not (data_dir / name).is_file():
            raise ValueError(f"{data_dir / name} not found: data_dir must be a Kaggle BirdCLEF folder")
    train = pd.read_csv(data_dir / "train.csv", dtype={"filename": str, "primary_label": str})
    missing = [c for c in REQUIRED_TRAIN_COLUMNS if c not in train.columns]
    if missing:
        raise ValueError(f"train.csv lacks the column(s) {missing}")
    taxonomy = pd.read_csv(data_dir / "taxonomy.csv", dtype={"primary_label": str})
    if "primary_label" not in taxonomy.columns:
        raise ValueError("taxonomy.csv lacks the column 'primary_label'")
    classes = set(taxonomy["primary_label"].dropna())

    rejected: list[dict] = []
    candidates: list[tuple[int, dict, Path]] = []  # (csv row, row, path) still to decode
    owner: dict[Path, int] = {}  # file -> the train.csv row whose clip it is
    accounted: set[Path] = set()  # files some row speaks for, kept or rejected
    n_unknown_secondary = 0
    for i, row in enumerate(train.to_dict("records")):
        csv_row = i + 2  # as a spreadsheet shows it: header is row 1
        filename = "" if pd.isna(row.get("filename")) else str(row["filename"])
        path = safe_audio_path(audio_root, filename)
        if path is not None:
            accounted.add(path)
        reason = _row_problem(row, filename, path, classes, owner)
        secondary: list[str] = []
        if reason is None:
            try:
                secondary = parse_label_list(row.get("secondary_labels"))
            except ValueError as err:
                reason = f"secondary_labels: {err}"
        if reason is not None:
            rejected.append({"filename": filename, "train_csv_row": csv_row, "reason": reason})
            continue
        label = row["primary_label"]
        n_unknown_secondary += sum(s not in classes for s in secondary)
        known = [s for s in secondary if s in classes and s != label]
        owner[path] = csv_row
        candidates.append((csv_row, {**row, "filename": filename, "secondary_labels": known}, path))

    log.info(
        "train.csv: %d rows, %d to decode, %d rejected before decoding", len(train), len(candidates), len(rejected)
    )
    if n_unknown_secondary:
        log.info("dropped %d secondary labels that are not in taxonomy.csv", n_unknown_secondary)

    def check(item: tuple[int, dict, Path]) -> AudioCheck:
        return check_audio(item[2])

    clips: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for k, (item, result) in enumerate(zip(candidates, pool.map(check, candidates), strict=True), start=1):
            csv_row, row, path = item
            if k % 500 == 0 or k == len(candidates):
                log.info("decoded %d/%d files", k, len(candidates))
            if result.problem is None and result.duration_s < min_duration_s:
                result = AudioCheck(
                    result.frames,
                    result.sample_rate,
                    result.channels,
                    f"too short: {result.duration_s:.2f} s < manifest.min_duration_s = {min_duration_s} s",
                )
            if result.problem is not None:
                rejected.append({"filename": row["filename"], "train_csv_row": csv_row, "reason": result.problem})
                continue
            clips.append(_clip_row(row, path, data_dir, result))

    files = list_audio_files(audio_root)
    root = audio_root.resolve()
    claimed_names = {p.relative_to(root).as_posix() for p in accounted}
    for name in files:
        if name not in claimed_names:
            rejected.append({"filename": name, "train_csv_row": pd.NA, "reason": "file is not listed in train.csv"})

    clips_df = pd.DataFrame(clips, columns=CLIP_COLUMNS).sort_values("clip_id", kind="stable").reset_index(drop=True)
    rejected_df = pd.DataFrame(rejected, columns=REJECTED_COLUMNS)
    rejected_df["train_csv_row"] = rejected_df["train_csv_row"].astype("Int64")
    rejected_df = rejected_df.sort_values(["train_csv_row", "filename"], kind="stable").reset_index(drop=True)
    return ManifestResult(clips_df, rejected_df, n_rows=len(train), n_files=len(files))


def _row_problem(row: dict, filename: str, path: Path | None, classes: set[str], owner: dict[Path, int]) -> str | None:
    """Why a train.csv row cannot be used before its file is even opened, or None."""
    label = row.get("primary_label")
    if not filename:
        return "empty filename"
    if path is None:
        return "path escapes train_audio/; not opened"
    if pd.isna(label) or label not in classes:
        return f"primary label {label!r} is not in taxonomy.csv"
    if path in owner:
        return f"duplicate row: the same file is listed on row {owner[path]}"
    return None


def _clip_row(row: dict, path: Path, data_dir: Path, result: AudioCheck) -> dict:
    filename = row["filename"]

    def opt(key: str) -> float | None:
        value = pd.to_numeric(row.get(key), errors="coerce")
        return None if pd.isna(value) else float(value)

    author = row.get("author")
    return {
        "clip_id": Path(filename).with_suffix("").as_posix(),
        "filename": filename,
        "path": (data_dir / "train_audio" / filename).as_posix(),
        "primary_label": row["primary_label"],
        "secondary_labels": row["secondary_labels"],
        "author": "" if pd.isna(author) else str(author),
        "duration_s": result.duration_s,
        "sample_rate": result.sample_rate,
        "channels": result.channels,
        "frames": result.frames,
        "latitude": opt("latitude"),
        "longitude": opt("longitude"),
        "rating": opt("rating"),
    }


def write_manifest(result: ManifestResult, clips_path: str | Path, rejected_path: str | Path) -> None:
    """Write the two tables; the clips as Parquet, the rejected as CSV for people to read."""
    import pyarrow as pa

    from birdclef.tables import write_csv, write_parquet

    schema = pa.schema(
        [
            ("clip_id", pa.string()),
            ("filename", pa.string()),
            ("path", pa.string()),
            ("primary_label", pa.string()),
            ("secondary_labels", pa.list_(pa.string())),
            ("author", pa.string()),
            ("duration_s", pa.float64()),
            ("sample_rate", pa.int32()),
            ("channels", pa.int16()),
            ("frames", pa.int64()),
            ("latitude", pa.float64()),
            ("longitude", pa.float64()),
            ("rating", pa.float64()),
        ]
    )
    write_parquet(result.clips, clips_path, schema=schema)
    write_csv(result.rejected, rejected_path, index=False)
