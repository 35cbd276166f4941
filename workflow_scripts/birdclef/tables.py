"""Writing tables between stages: atomically (``birdclef.atomic``), so an interrupted job never leaves half a file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from birdclef.atomic import atomic_path


def write_parquet(
    table: pd.DataFrame | pa.Table,
    path: str | Path,
    schema: pa.Schema | None = None,
    metadata: dict[str, str] | None = None,
    row_group_size: int | None = None,
) -> None:
    """Write ``table`` to ``path`` (zstd) under a temporary name, then rename it into place.

    ``metadata`` is added to the schema's key-value metadata.
    """
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, schema=schema, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)


def write_csv(table: pd.DataFrame, path: str | Path, **to_csv_kwargs) -> None:
    """``table.to_csv(path, **to_csv_kwargs)`` under a temporary name, then renamed into place."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, **to_csv_kwargs)


def _strict(value: object) -> object:
    """NaN and infinities as None, all the way down: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def write_json(value: object, path: str | Path) -> None:
    """``value`` as indented strict JSON (NaN becomes null), written under a temporary name, then renamed."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_strict(value), indent=2, default=float) + "\n")
