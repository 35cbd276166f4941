import numpy as np
import pandas as pd
import pytest
from scipy.signal import resample_poly

import birdclef.dedup as dedup_module
from birdclef.audio import read_audio, write_ogg
from birdclef.dedup import (
    DEFAULT_THRESHOLD,
    DUPLICATE_COLUMNS,
    FRAMES_PER_S,
    PAIR_COLUMNS,
    ambiguous_durations,
    candidate_pairs,
    dedup,
    dedup_filtered,
    fingerprint_audio,
    fingerprint_file,
    group_duplicates,
    similarity,
)
from birdclef.demo_data import generate
from birdclef.manifest import build_manifest
from birdclef.settings import DemoConfig

from conftest import TINY_DEMO

# More clips per label than the tiny demo, three planted duplicates of each kind.
BIGGER_DEMO = {
    **TINY_DEMO,
    "n_species": 6,
    "clips_per_species": [6, 10],
    "n_duplicates": 12,
    "n_train_soundscapes": 0,
    "n_test_soundscapes": 0,
}


def found_pairs(clips: pd.DataFrame) -> set[frozenset[str]]:
    """Every unordered pair of filenames that ended in one dup_group."""
    pairs = set()
    for _, group in clips.groupby("dup_group"):
        names = sorted(group["filename"])
        pairs |= {frozenset((a, b)) for k, a in enumerate(names) for b in names[k + 1 :]}
    return pairs


def truth_pairs(data_dir) -> set[frozenset[str]]:
    truth = pd.read_csv(data_dir / "duplicates_truth.csv")
    return {frozenset(p) for p in zip(truth["original"], truth["duplicate"], strict=True)}


def check_against_truth(data_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    clips = build_manifest(data_dir, workers=2).clips
    out, duplicates, _ = dedup(clips, workers=2)
    truth, found = truth_pairs(data_dir), found_pairs(out)
    assert found - truth == set(), "false positives"  # precision 1.0
    assert truth - found == set(), "missed duplicates"  # recall 1.0
    return out, duplicates


def test_tiny_demo_precision_and_recall(tiny_demo):
    out, duplicates = check_against_truth(tiny_demo)
    truth = pd.read_csv(tiny_demo / "duplicates_truth.csv")
    assert set(truth["kind"]) == {"exact", "reencoded", "gain", "trimmed"}
    assert len(duplicates) == len(truth)
    assert (duplicates["similarity"] >= DEFAULT_THRESHOLD).all()


def test_bigger_demo_precision_and_recall(tmp_path):
    generate(tmp_path, DemoConfig.from_dict(BIGGER_DEMO), workers=2)
    truth = pd.read_csv(tmp_path / "duplicates_truth.csv")
    assert truth["kind"].value_counts().to_dict() == {"exact": 3, "reencoded": 3, "gain": 3, "trimmed": 3}
    out, duplicates = check_against_truth(tmp_path)
    # many same-label recordings that are not duplicates, all of them left alone
    per_label = out.groupby("primary_label").size()
    assert (per_label >= 6).all() and out["keep"].sum() == len(out) - len(truth)
    # a trimmed copy loses to its longer original
    trimmed = truth[truth["kind"] == "trimmed"]
    kept = out.set_index("filename")["keep"]
    assert kept[trimmed["original"]].all() and not kept[trimmed["duplicate"]].any()
    assert (duplicates["rule"] == "content").all()
    assert duplicates["similarity"].min() > DEFAULT_THRESHOLD + 0.2  # the margin measured when choosing it


def test_output_tables(tiny_demo):
    clips = build_manifest(tiny_demo).clips
    out, duplicates, _ = dedup(clips)
    assert list(out.columns) == [*clips.columns, "dup_group", "keep", "dup_reason"]
    assert out["clip_id"].tolist() == clips["clip_id"].tolist()
    assert out["dup_group"].notna().all() and out["dup_reason"].ne("").all()
    # every group keeps exactly one clip, and names it
    kept = out[out["keep"]]
    assert kept["dup_group"].is_unique and (kept["dup_group"] == kept["clip_id"]).all()
    assert set(out["dup_group"]) == set(kept["clip_id"])
    assert list(duplicates.columns) == DUPLICATE_COLUMNS
    assert set(duplicates["clip_id"]) == set(out.loc[~out["keep"], "clip_id"])
    assert (duplicates["group"] == duplicates["kept_clip_id"]).all()
    assert set(duplicates["rule"]) <= {"metadata", "content"}


# --- unit tests on hand-made tables ----------------------------------------


def clip_table(rows: list[dict]) -> pd.DataFrame:
    base = {"path": "", "author": "", "primary_label": "a", "duration_s": 10.0, "rating": np.nan}
    df = pd.DataFrame([{**base, **r} for r in rows])
    df["filename"] = df["clip_id"] + ".ogg"
    return df


def pairs_table(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"clip_a": a, "clip_b": b, "primary_label": "a", "similarity": s, "offset_s": 0.0, "rule": rule}
            for a, b, rule, s in rows
        ]
    ).assign(metadata=lambda d: d["rule"] == "metadata", content=lambda d: d["rule"] == "content")[PAIR_COLUMNS]


def test_keep_rule_longest_then_rating_then_clip_id():
    clips = clip_table(
        [
            {"clip_id": "a/1", "duration_s": 8.0, "rating": 5.0},  # shorter: loses despite the rating
            {"clip_id": "a/2", "duration_s": 10.0, "rating": 3.0},
            {"clip_id": "a/3", "duration_s": 10.0, "rating": 4.0},  # longest, best rated: kept
            {"clip_id": "b/1", "duration_s": 5.0, "rating": np.nan},
            {"clip_id": "b/0", "duration_s": 5.0, "rating": np.nan},  # all tied: smallest clip_id
            {"clip_id": "c/1", "duration_s": 5.0, "rating": np.nan},
            {"clip_id": "c/2", "duration_s": 5.0, "rating": 0.5},  # a rating beats none
        ]
    )
    pairs = pairs_table(
        [
            ("a/1", "a/2", "content", 0.9),
            ("a/2", "a/3", "content", 0.95),  # a/1 joins a/3's group through a/2
            ("b/0", "b/1", "metadata", 0.1),
            ("c/1", "c/2", "content", 0.99),
        ]
    )
    out, duplicates = group_duplicates(clips, pairs)
    groups = out.set_index("clip_id")["dup_group"]
    assert groups[["a/1", "a/2", "a/3"]].eq("a/3").all()
    assert groups[["b/0", "b/1"]].eq("b/0").all()
    assert groups[["c/1", "c/2"]].eq("c/2").all()
    assert sorted(out.loc[out["keep"], "clip_id"]) == ["a/3", "b/0", "c/2"]
    reasons = out.set_index("clip_id")["dup_reason"]
    assert reasons["a/3"].endswith("highest rating")
    assert reasons["b/0"].endswith("smallest clip_id")
    rows = duplicates.set_index("clip_id")
    assert rows.loc["a/2", ["kept_clip_id", "rule", "similarity"]].tolist() == ["a/3", "content", 0.95]
    # no direct pair with the kept clip: its own strongest link
    assert rows.loc["a/1", ["kept_clip_id", "similarity"]].tolist() == ["a/3", 0.9]
    assert reasons["a/1"] == "content duplicate of a/3 via a/2 (similarity 0.90)"
    assert rows.loc["b/1", "rule"] == "metadata"


def test_every_clip_gets_a_group_and_singletons_keep_themselves():
    clips = clip_table([{"clip_id": f"a/{k}"} for k in range(4)])
    out, duplicates = group_duplicates(clips, pairs_table([("a/1", "a/2", "content", 0.99)]))
    assert out["dup_group"].tolist() == ["a/0", "a/1", "a/1", "a/3"]
    assert out["keep"].tolist() == [True, True, False, True]
    assert out["dup_reason"].tolist()[0] == "unique"
    assert duplicates["clip_id"].tolist() == ["a/2"]
    # no pairs at all
    out, duplicates = group_duplicates(clips, pd.DataFrame(columns=PAIR_COLUMNS))
    assert (out["dup_group"] == out["clip_id"]).all() and out["keep"].all() and duplicates.empty


def test_metadata_rule_alone_flags_same_author_label_and_duration(tmp_path):
    rng = np.random.default_rng(0)
    # two unrelated noises: the audio says they differ, the metadata says duplicate
    for name in ("x1", "x2", "x3"):
        write_ogg(tmp_path / f"{name}.ogg", rng.standard_normal(32_000 * 4).astype(np.float32) * 0.1, 32_000)
    clips = clip_table(
        [
            {"clip_id": "x1", "author": "Ann", "duration_s": 4.0},
            {"clip_id": "x2", "author": "Ann", "duration_s": 4.0},
            {"clip_id": "x3", "author": "Bob", "duration_s": 4.0},  # another author: not a duplicate
        ]
    ).assign(path=lambda d: [str(tmp_path / f"{c}.ogg") for c in d["clip_id"]], rating=[3.0, 4.0, 5.0])
    out, duplicates, _ = dedup(clips)
    assert duplicates[["clip_id", "kept_clip_id", "rule"]].values.tolist() == [["x1", "x2", "metadata"]]
    assert duplicates["similarity"].iloc[0] < 0.3
    assert out.set_index("clip_id")["keep"].tolist() == [False, True, True]


def test_metadata_rule_skips_fixed_length_cuts():
    # one author, many clips cut to one length (as in NIPS4B): equal length means nothing
    clips = clip_table(
        [{"clip_id": f"{label}/{k}", "primary_label": label, "author": "nips4b"} for label in "ab" for k in range(2)]
        + [{"clip_id": "c/0", "primary_label": "c", "author": "nips4b", "duration_s": 3.0}]
    )
    assert ambiguous_durations(clips, 0.05).tolist() == [True] * 4 + [False]
    assert not candidate_pairs(clips)["metadata"].any()
    assert candidate_pairs(clips.iloc[[0, 1]])["metadata"].all()


def test_candidate_pairs_stay_within_label_and_trim_range():
    clips = clip_table(
        [
            {"clip_id": "a/long", "duration_s": 10.0},
            {"clip_id": "a/trim", "duration_s": 7.5},  # 25 % shorter: could be a trimmed copy
            {"clip_id": "a/short", "duration_s": 5.0},  # half: cannot
            {"clip_id": "b/same", "primary_label": "b", "duration_s": 10.0},  # other label
        ]
    )
    pairs = candidate_pairs(clips, max_trim=0.3)
    ids = clips["clip_id"].to_numpy()
    # a/trim and a/short: 5.0 / 7.5 = 0.67 < 0.7, not compared either
    assert [tuple(ids[[i, j]]) for i, j in zip(pairs["i"], pairs["j"], strict=True)] == [("a/long", "a/trim")]


def test_similarity_finds_a_trimmed_copy_at_its_offset():
    rng = np.random.default_rng(1)
    sr = 32_000
    audio = rng.standard_normal(sr * 6).astype(np.float32) * np.repeat(rng.uniform(0.05, 1, 60), sr // 10)
    fa = fingerprint_audio(audio, sr)
    # starts 1.5 s in: half a hop (4 ms) off the frame grid, the worst case; -6 dB
    cut = audio[int(1.5 * sr) : int(5.2 * sr)] * 0.5
    fb = fingerprint_audio(np.stack([cut, cut], axis=1), sr)  # and stereo
    sim, offset = similarity(fa, fb, min_overlap=0.9)
    assert sim > 0.8 and offset / FRAMES_PER_S == pytest.approx(1.5, abs=0.01)
    # the same from the other side: the offset flips sign
    sim_ba, offset_ba = similarity(fb, fa)
    assert sim_ba == pytest.approx(sim) and offset_ba == -offset
    other = fingerprint_audio(rng.standard_normal(len(cut)).astype(np.float32), sr)
    assert similarity(fa, other)[0] < 0.3


def test_fingerprint_does_not_depend_on_sample_rate_or_gain(tmp_path):
    rng = np.random.default_rng(2)
    audio = rng.standard_normal(32_000 * 3).astype(np.float32) * np.repeat(rng.uniform(0.05, 1, 30), 3_200)
    write_ogg(tmp_path / "a.ogg", audio, 32_000)
    decoded, sr = read_audio(tmp_path / "a.ogg")
    at_48k = resample_poly(decoded, 3, 2).astype(np.float32) * 0.3
    sim, offset = similarity(fingerprint_audio(decoded, sr), fingerprint_audio(at_48k, 48_000))
    assert sim > 0.9 and abs(offset) <= 1


def test_long_files_are_read_in_blocks_with_the_same_result(tiny_demo, monkeypatch):
    path = tiny_demo / "train_audio" / pd.read_csv(tiny_demo / "duplicates_truth.csv")["original"].iloc[0]
    audio, sr = read_audio(path)
    whole = fingerprint_audio(audio, sr)
    monkeypatch.setattr(dedup_module, "_READ_BLOCK", 5_000)  # far shorter than the file
    np.testing.assert_allclose(fingerprint_file(path), whole, atol=1e-4)


@pytest.mark.real_data
def test_real_recordings(shared_data):
    clips = build_manifest(shared_data, workers=2).clips
    out, duplicates, _ = dedup(clips, workers=2)
    assert len(out) == len(clips) and out["clip_id"].is_unique
    assert out["dup_group"].notna().all() and out["keep"].sum() == len(out) - len(duplicates)
    assert list(duplicates.columns) == DUPLICATE_COLUMNS
    # NIPS4B: every clip by 'nips4b', most cut to 5.004 s; the metadata rule must not fire on that
    assert not (duplicates["rule"] == "metadata").any()
    assert len(duplicates) <= 0.05 * len(clips)


def test_a_group_keeps_a_clip_that_passed_the_quality_filter():
    clips = pd.DataFrame(
        {
            "clip_id": ["a/1", "a/2", "a/3"],
            "duration_s": [10.0, 8.0, 7.0],
            "rating": [None, None, None],
            "quality_keep": [False, True, True],
        }
    )
    pairs = pairs_table([("a/1", "a/2", "content", 0.99), ("a/2", "a/3", "content", 0.95)])
    out, duplicates = group_duplicates(clips, pairs, prefer="quality_keep")
    assert out.set_index("clip_id")["keep"].to_dict() == {"a/1": False, "a/2": True, "a/3": False}
    assert "longest" in out.set_index("clip_id").loc["a/2", "dup_reason"]
    out, _ = group_duplicates(clips, pairs)
    assert out.set_index("clip_id").loc["a/1", "keep"]


def test_dedup_filtered_keeps_both_verdicts(tiny_demo):
    clips = build_manifest(tiny_demo, workers=2).clips
    filtered = clips.assign(keep=True, reason="kept")
    filtered.loc[0, ["keep", "reason"]] = (False, "dropped")
    out, duplicates, pairs = dedup_filtered(filtered, workers=2)
    assert {"quality_keep", "quality_reason", "dedup_keep", "dup_reason", "keep"} <= set(out.columns)
    assert (out["keep"] == (out["quality_keep"] & out["dedup_keep"])).all()
    assert len(duplicates) == (~out["dedup_keep"]).sum() > 0
    assert (pairs["rule"] == "").any()  # every compared pair, not only the flagged ones
