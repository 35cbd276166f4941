import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

import birdclef.manifest as manifest
from birdclef.manifest import build_manifest, parse_label_list, safe_audio_path, write_manifest


@pytest.fixture(scope="module")
def result(tiny_demo):
    return build_manifest(tiny_demo, min_duration_s=0.5, workers=2)


def test_every_row_and_every_file_is_accounted_for(result, tiny_demo):
    train = pd.read_csv(tiny_demo / "train.csv")
    rej = result.rejected
    row_rejects = rej["train_csv_row"].notna()
    # each train.csv row is either a clip or a rejected row, never both, never neither
    assert len(result.clips) + row_rejects.sum() == len(train) == result.n_rows
    assert rej.loc[row_rejects, "train_csv_row"].is_unique
    # each file is a clip, belongs to a rejected row, or is rejected on its own
    files = set(manifest.list_audio_files(tiny_demo / "train_audio"))
    assert len(files) == result.n_files
    spoken_for = set(result.clips["filename"]) | set(rej["filename"])
    assert files <= spoken_for
    assert set(result.clips["filename"]).isdisjoint(rej["filename"])


def test_messy_files_end_where_the_truth_says(result, tiny_demo):
    truth = pd.read_csv(tiny_demo / "messy_truth.csv")
    reasons = dict(zip(result.rejected["filename"], result.rejected["reason"], strict=True))
    expected_reason = {
        "truncated": "truncated",
        "zero_length": "empty file",
        "not_audio": "cannot decode",
        "too_short": "too short",
        "missing_file": "file does not exist",
        "unknown_label": "primary label 'zzzunk' is not in taxonomy.csv",
        "not_in_train_csv": "file is not listed in train.csv",
        "path_escape": "path escapes train_audio/",
    }
    for row in truth.itertuples():
        if row.expected == "kept":
            assert row.filename in set(result.clips["filename"]), row.kind
        else:
            assert reasons[row.filename].startswith(expected_reason[row.kind]), (row.kind, reasons[row.filename])
    # nothing but the planted problems is rejected
    assert set(result.rejected["filename"]) == set(truth.loc[truth["expected"] == "rejected", "filename"])


def test_clip_rows(result, tiny_demo):
    clips = result.clips.set_index("filename")
    stereo = pd.read_csv(tiny_demo / "messy_truth.csv").set_index("kind").loc["stereo_48k", "filename"]
    assert (clips.loc[stereo, "sample_rate"], clips.loc[stereo, "channels"]) == (48_000, 2)
    assert clips.loc[stereo, "duration_s"] == pytest.approx(8.0)
    train = pd.read_csv(tiny_demo / "train.csv").set_index("filename")
    for name, row in clips.iterrows():
        assert row["primary_label"] == train.loc[name, "primary_label"]
        assert row["secondary_labels"] == parse_label_list(train.loc[name, "secondary_labels"])
        assert row["clip_id"] == name.removesuffix(".ogg")
    assert result.clips["clip_id"].is_unique and result.clips["clip_id"].is_monotonic_increasing


def test_written_tables(result, tmp_path):
    write_manifest(result, tmp_path / "clips.parquet", tmp_path / "rejected.csv")
    table = pq.read_table(tmp_path / "clips.parquet")
    assert str(table.schema.field("secondary_labels").type) == "list<element: string>"
    back = table.to_pandas()
    assert back["clip_id"].tolist() == result.clips["clip_id"].tolist()
    rejected = pd.read_csv(tmp_path / "rejected.csv")
    assert list(rejected.columns) == ["filename", "train_csv_row", "reason"]
    assert len(rejected) == len(result.rejected)


def test_escaping_paths_are_never_opened(tiny_demo, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data)
    outside = data / "secret.ogg"
    shutil.copyfile(next((data / "train_audio").rglob("*.ogg")), outside)
    train = pd.read_csv(data / "train.csv")
    bad = {**train.iloc[0].to_dict(), "filename": "../secret.ogg"}
    absolute = {**train.iloc[0].to_dict(), "filename": str(outside)}
    pd.concat([train, pd.DataFrame([bad, absolute])]).to_csv(data / "train.csv", index=False)
    opened = []
    real_check = manifest.check_audio
    monkeypatch.setattr(manifest, "check_audio", lambda p: opened.append(p) or real_check(p))
    result = build_manifest(data)
    assert outside.resolve() not in {p.resolve() for p in opened}
    reasons = result.rejected.set_index("filename")["reason"]
    assert reasons["../secret.ogg"].startswith("path escapes")
    assert reasons[str(outside)].startswith("path escapes")


def test_duplicate_rows_and_bad_secondary_labels(tiny_demo, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data)
    train = pd.read_csv(data / "train.csv")
    clean = train[train["filename"].str.fullmatch(r"[a-z]+/XC\d{6}\.ogg") & ~train["filename"].str.contains("XC99")]
    good = clean.iloc[0].to_dict()
    dup = dict(good)
    garbled = {**clean.iloc[1].to_dict(), "secondary_labels": "['a', "}
    unknown_secondary = clean.iloc[2].to_dict()
    unknown_secondary["secondary_labels"] = "['not_a_class']"
    train = train[~train["filename"].isin([garbled["filename"], unknown_secondary["filename"]])]
    pd.concat([train, pd.DataFrame([dup, garbled, unknown_secondary])]).to_csv(data / "train.csv", index=False)
    result = build_manifest(data)
    reasons = result.rejected.groupby("filename")["reason"].apply(list)
    assert any(r.startswith("duplicate row") for r in reasons[good["filename"]])
    assert reasons[garbled["filename"]][0].startswith("secondary_labels: cannot parse")
    kept = result.clips.set_index("filename")
    assert kept.loc[unknown_secondary["filename"], "secondary_labels"] == []


def test_not_a_kaggle_folder(tmp_path):
    with pytest.raises(ValueError, match="train.csv not found"):
        build_manifest(tmp_path)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("[]", []), ("['a', 'b']", ["a", "b"]), ("", []), (float("nan"), []), ("'a'", ["a"])],
)
def test_parse_label_list(cell, expected):
    assert parse_label_list(cell) == expected


@pytest.mark.parametrize("cell", ["[1, 2]", "__import__('os')", "['a'"])
def test_parse_label_list_refuses(cell):
    with pytest.raises(ValueError):
        parse_label_list(cell)


def test_safe_audio_path(tmp_path):
    assert safe_audio_path(tmp_path, "a/b.ogg") == (tmp_path / "a/b.ogg").resolve()
    assert safe_audio_path(tmp_path, "../x.ogg") is None
    assert safe_audio_path(tmp_path, "a/../../x.ogg") is None
    assert safe_audio_path(tmp_path, "/etc/passwd") is None


@pytest.mark.real_data
def test_real_recordings(shared_data):
    result = build_manifest(shared_data, workers=2)
    train = pd.read_csv(shared_data / "train.csv")
    assert len(result.clips) + len(result.rejected) >= len(train)
    assert len(result.clips) == len(train), result.rejected.to_string()
    assert result.clips["sample_rate"].eq(32_000).all()
    assert result.clips["duration_s"].between(0.5, 6).all()
    assert result.clips["secondary_labels"].map(len).sum() > 0
