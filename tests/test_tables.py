import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from birdclef.tables import write_json, write_parquet


def test_write_parquet_round_trips_with_metadata(tmp_path):
    df = pd.DataFrame({"clip_id": ["a", "b"], "x": [1.5, 2.5], "w": [[1.0], []]})
    write_parquet(df, tmp_path / "sub" / "t.parquet", metadata={"k": "v"})
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "sub" / "t.parquet"), df)
    assert pq.read_schema(tmp_path / "sub" / "t.parquet").metadata[b"k"] == b"v"
    assert os.listdir(tmp_path / "sub") == ["t.parquet"]


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    assert os.listdir(tmp_path) == []


def test_write_json_is_strict_json(tmp_path):
    import json

    write_json({"a": float("nan"), "b": [1.5, float("inf")], "c": {"d": 2}}, tmp_path / "x.json")
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": {"d": 2}}
    assert os.listdir(tmp_path) == ["x.json"]
