"""Validation soundscapes built from each fold's held-out clips: labels, folds, clips, levels and the DAG."""

import math
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from birdclef.background_screen import background_windows
from birdclef.backgrounds import is_background
from birdclef.mel_shards import load_audio
from birdclef.plots import plot_built_soundscape
from birdclef.settings import ValidationBuildConfig
from birdclef.validation_set import (
    build_validation_set,
    held_out_clips,
    plan_validation,
    render_background,
    render_soundscape,
    slot_labels,
)

from conftest import REPO, planned_jobs, run_snakemake

SR = 32_000
SLOT_S = 5.0
CLASSES = ["a", "b", "c"]
TONE_HZ = {"a": 1000.0, "b": 2500.0, "c": 6000.0}  # each class a pure tone of its own
CFG = ValidationBuildConfig(soundscape_seconds=20, fill_share=0.67, snr_db=(0.0, 10.0), seed=3)


def tone(cls: str, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * TONE_HZ[cls] * t + 0.3)).astype(np.float32)  # no sample exactly 0


# clip id -> (fold, primary, secondary, audio, best windows)
def clip_audio() -> dict[str, tuple]:
    long_c = np.concatenate([tone("a", 4.0), tone("c", 5.0), tone("a", 3.0)])  # c only in its best window, 4-9 s
    return {
        "c1": (0, "a", ["b", "zzz"], tone("a", 3.0) + tone("b", 3.0, 0.2), [0.0]),  # zzz: not a class
        "c2": (0, "b", [], tone("b", 2.0), [0.0]),
        "c3": (0, "c", [], long_c, [4.0, 0.0]),
        "c4": (0, "a", [], tone("a", 5.0), [0.0]),
        "c5": (1, "c", [], tone("c", 1.0), [0.0]),
        "c6": (1, "b", ["c"], tone("b", 4.0) + tone("c", 4.0, 0.3), [0.0]),
        "c7": (1, "a", [], tone("a", 7.0), [2.0]),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A validation set built from seven tone clips in two folds, on one white-noise background."""
    root = tmp_path_factory.mktemp("built")
    rows = []
    for clip_id, (fold, primary, secondary, audio, best) in clip_audio().items():
        path = root / "train_audio" / f"{clip_id}.flac"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, audio, SR)
        rows.append([clip_id, str(path), primary, secondary, len(audio) / SR, best, True, fold])
    columns = ["clip_id", "path", "primary_label", "secondary_labels", "duration_s", "best_windows", "keep", "fold"]
    table = pd.DataFrame(rows, columns=columns)
    clips, folds = table.drop(columns="fold"), table[["clip_id", "fold"]]
    noise = np.random.default_rng(0).standard_normal(30 * SR).astype(np.float32) * 0.01
    background = root / "bg.flac"
    sf.write(background, noise, SR)
    held_out = held_out_clips(clips, folds)
    out = root / "soundscapes"
    pool = pool_of({str(background): 30.0})
    solution, soundscapes, slots, under, first = build_validation_set(
        held_out, CLASSES, pool, CFG, SLOT_S, SR, out, lambda p: load_audio(p, SR)
    )
    return {"solution": solution, "soundscapes": soundscapes, "slots": slots, "under": under, "first": first} | {
        "dir": out
    }


def pool_of(durations: dict[str, float]) -> pd.DataFrame:
    """Every 5 s window of each background (path -> seconds), as the screen lists them."""
    return background_windows(durations, SLOT_S).rename(columns={"id": "background", "offset_s": "start_s"})


def tones_heard(audio: np.ndarray) -> set[str]:
    """The classes whose tone stands far above the spectrum's median in ``audio``."""
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    floor = np.median(spectrum)
    return {c for c, hz in TONE_HZ.items() if spectrum[np.abs(freqs - hz) < 3].max() > 30 * floor}


def test_each_rows_labels_are_the_tones_laid_in_its_slot(built):
    solution = built["solution"].set_index("row_id")
    assert list(solution.columns) == CLASSES and set(np.unique(solution.to_numpy())) <= {0, 1}
    heard_any = 0
    for path in sorted(built["dir"].glob("*.flac")):
        audio, sr = sf.read(path, dtype="float32")
        assert sr == SR and len(audio) == CFG.soundscape_seconds * SR
        for k in range(CFG.soundscape_seconds // 5):
            row = solution.loc[f"{path.stem}_{5 * (k + 1)}"]
            heard = tones_heard(audio[k * 5 * SR : (k + 1) * 5 * SR])
            assert heard == set(row.index[row == 1]), f"{path.stem} slot {k}"
            heard_any += bool(heard)
    assert heard_any == len(clip_audio())


def test_a_slot_holds_the_clips_primary_and_known_secondary_labels(built):
    slots = built["slots"].set_index("clip_id")
    assert slots.loc["c1", "labels"] == "a b"  # zzz is not a class
    assert slots.loc["c6", "labels"] == "b c"
    assert slot_labels("a", ["c", "a", "x"], CLASSES) == ["a", "c"]
    with pytest.raises(ValueError, match="not a class"):
        slot_labels("x", [], CLASSES)


def test_every_held_out_clip_is_in_exactly_one_slot_of_a_soundscape_of_its_own_fold(built):
    slots, soundscapes = built["slots"], built["soundscapes"]
    folds = {c: v[0] for c, v in clip_audio().items()}
    assert sorted(slots["clip_id"]) == sorted(folds)  # each held-out clip, once
    fold_of = soundscapes.set_index("soundscape")["fold"]
    assert (slots["soundscape"].map(fold_of) == slots["clip_id"].map(folds)).all()  # one fold per soundscape
    assert slots.groupby("soundscape")["fold"].nunique().eq(1).all()
    assert not slots.duplicated(["soundscape", "slot"]).any()  # one clip per slot
    # fold 0: 4 clips, fold 1: 3, in 4-slot soundscapes about 2/3 full: two soundscapes each, with empty slots
    assert soundscapes.groupby("fold").size().to_dict() == {0: 2, 1: 2}
    assert (soundscapes["n_clips"].sum(), soundscapes["n_slots"].sum()) == (7, 16)
    assert (built["solution"][CLASSES].sum(axis=1) == 0).sum() == 16 - 7  # the empty slots: negatives
    assert sorted(p.stem for p in built["dir"].glob("*.flac")) == sorted(soundscapes["soundscape"])


def test_long_clips_are_cut_at_their_best_window_short_ones_placed_inside_the_slot(built):
    slots = built["slots"].set_index("clip_id")
    assert tuple(slots.loc["c3", ["clip_start_s", "clip_s", "place_s"]]) == (4.0, 5.0, 0.0)
    assert tuple(slots.loc["c7", ["clip_start_s", "clip_s", "place_s"]]) == (2.0, 5.0, 0.0)
    for clip_id, seconds in [("c1", 3.0), ("c2", 2.0), ("c5", 1.0), ("c6", 4.0)]:
        assert slots.loc[clip_id, "clip_start_s"] == 0 and slots.loc[clip_id, "clip_s"] == pytest.approx(seconds)
        assert 0 <= slots.loc[clip_id, "place_s"] <= 5.0 - seconds
    assert slots["snr_db"].between(*CFG.snr_db).all()


def test_the_plan_is_the_seeds_and_counts_slots_by_the_fill_share():
    held_out = pd.DataFrame(
        {
            "clip_id": [f"x{i:02d}" for i in range(30)],
            "path": "x.ogg",
            "primary_label": "a",
            "secondary_labels": [[]] * 30,
            "duration_s": 3.0,
            "best_windows": [[0.0]] * 30,
            "fold": [i % 3 for i in range(30)],
        }
    )
    cfg = ValidationBuildConfig(soundscape_seconds=60, fill_share=0.5, seed=1)
    pool = pool_of({"bg1": 60.0, "bg2": 90.0})
    slots, soundscapes, under = plan_validation(held_out, CLASSES, cfg, SLOT_S, pool)
    again, _, under_again = plan_validation(held_out, CLASSES, cfg, SLOT_S, pool)
    pd.testing.assert_frame_equal(slots, again)
    pd.testing.assert_frame_equal(under, under_again)
    other, _, _ = plan_validation(held_out, CLASSES, ValidationBuildConfig(fill_share=0.5, seed=2), SLOT_S, pool)
    assert not slots[["soundscape", "slot"]].equals(other[["soundscape", "slot"]])
    # 10 clips a fold, 12 slots a soundscape, half of them filled: 2 soundscapes a fold
    assert soundscapes.groupby("fold").size().tolist() == [2, 2, 2]
    # every slot of every soundscape lies on one window of the pool, drawn from all of it
    assert under.groupby("soundscape")["slot"].apply(sorted).map(lambda s: s == list(range(12))).all()
    assert set(under["soundscape"]) == set(soundscapes["soundscape"])
    windows = set(zip(pool["background"], pool["start_s"], strict=True))
    drawn = set(zip(under["background"], under["background_start_s"], strict=True))
    assert drawn <= windows and len(drawn) > len(windows) / 2
    assert plan_validation(held_out, CLASSES, cfg, SLOT_S, pool.iloc[:0])[2].empty  # no pool: no background slots
    names = zip(soundscapes["soundscape"], soundscapes["fold"], strict=True)
    assert all(re.fullmatch(rf"built_fold{f}_\d{{3}}", s) for s, f in names)


SOUNDSCAPE = pd.Series({"soundscape": "s", "fold": 0, "index": 0, "seconds": 10.0, "n_slots": 2})


def test_each_slot_lies_on_its_own_background_window_faded_at_its_edges():
    cfg = ValidationBuildConfig(soundscape_seconds=10, background_gain_db=-6.0)
    ramp = np.arange(20 * SR, dtype=np.float32) / SR  # sample value = its time in the recording
    under = pd.DataFrame({"slot": [0, 1], "background": ["r", "r"], "background_start_s": [10.0, 0.0]})
    out = render_background(SOUNDSCAPE, under, cfg, SR, {"r": ramp}.__getitem__) / 10 ** (-6 / 20)
    edge = round(0.005 * SR)  # validation_set.FADE_S
    np.testing.assert_allclose(out[edge : 5 * SR - edge], ramp[10 * SR + edge : 15 * SR - edge], rtol=1e-6)
    np.testing.assert_allclose(out[5 * SR + edge : 10 * SR - edge], ramp[edge : 5 * SR - edge], rtol=1e-6)
    assert out[5 * SR - 1] < 1e-3 * ramp[15 * SR - 1]  # faded out, no click at the slot's edge
    quiet = render_background(SOUNDSCAPE, under.iloc[:0], cfg, SR, {}.__getitem__)
    assert 0 < np.sqrt(np.mean(quiet**2)) < 0.1 and len(quiet) == 10 * SR  # no window: synthetic noise


def test_the_clip_lies_at_the_drawn_snr_over_the_background():
    cfg = ValidationBuildConfig(soundscape_seconds=10, snr_db=(-5.0, 10.0), background_gain_db=-6.0)
    noise = np.random.default_rng(1).standard_normal(10 * SR).astype(np.float32) * 0.05
    audio = {"bg": noise, "clip": tone("b", 2.0)}
    under = pd.DataFrame({"slot": [0, 1], "background": ["bg", "bg"], "background_start_s": [0.0, 5.0]})
    slots = pd.DataFrame(
        [{"start_s": 5.0, "clip_start_s": 0.0, "clip_s": 2.0, "place_s": 1.5, "snr_db": 7.0, "path": "clip"}]
    )
    out, scale = render_soundscape(SOUNDSCAPE, slots, under, cfg, SR, audio.__getitem__)
    bg = render_background(SOUNDSCAPE, under, cfg, SR, audio.__getitem__)
    assert scale == 1.0
    np.testing.assert_allclose(out[: 6 * SR], bg[: 6 * SR], atol=1e-7)  # background only, at its gain
    i0, i1 = round(6.5 * SR), round(8.5 * SR)
    clip = out[i0:i1] - bg[i0:i1]
    snr = 20 * math.log10(np.sqrt(np.mean(clip**2)) / np.sqrt(np.mean(bg[i0:i1] ** 2)))
    assert snr == pytest.approx(7.0, abs=0.05)  # the fades cost a little energy
    np.testing.assert_allclose(out[i1:], bg[i1:], atol=1e-7)


def test_without_backgrounds_the_clips_lie_on_quiet_synthetic_noise(tmp_path):
    held_out = pd.DataFrame(
        [["c1", "c1", "a", [], 3.0, [0.0], 0], ["c2", "c2", "b", [], 3.0, [0.0], 1]],
        columns=["clip_id", "path", "primary_label", "secondary_labels", "duration_s", "best_windows", "fold"],
    )
    audio = {"c1": tone("a", 3.0), "c2": tone("b", 3.0)}
    solution, soundscapes, slots, under, first = build_validation_set(
        held_out, CLASSES, None, ValidationBuildConfig(soundscape_seconds=10), SLOT_S, SR, tmp_path / "v", audio.get
    )
    assert under.empty and len(soundscapes) == 2
    assert 0 < np.sqrt(np.mean(first**2)) < 0.1 and len(first) == 10 * SR
    assert solution[CLASSES].sum().tolist() == [1, 1, 0]


def test_held_out_clips_must_match_the_folds():
    clips = pd.DataFrame({"clip_id": ["a", "b", "c"], "keep": [True, True, False]})
    assert held_out_clips(clips, pd.DataFrame({"clip_id": ["b", "a"], "fold": [1, 0]}))["clip_id"].tolist() == [
        "a",
        "b",
    ]
    with pytest.raises(ValueError, match="no fold"):
        held_out_clips(clips, pd.DataFrame({"clip_id": ["a"], "fold": [0]}))
    with pytest.raises(ValueError, match="not kept"):
        held_out_clips(clips, pd.DataFrame({"clip_id": ["a", "b", "c"], "fold": [0, 1, 0]}))


def test_the_example_figure(built, tmp_path):
    slots = built["slots"]
    first = built["soundscapes"].iloc[0]
    labels = slots[slots["soundscape"] == first["soundscape"]].set_index("slot")["labels"]
    out = tmp_path / "example.png"
    plot_built_soundscape(built["first"], SR, SLOT_S, [labels.get(k, "").split() for k in range(4)], "x", out)
    assert out.read_bytes()[:4] == b"\x89PNG"


# --- The DAG: given validation soundscapes, or built ones -------------------------------------
SOUNDSCAPES = [f"site_{k:03d}" for k in range(12)]


def fake_data(root, validation: bool) -> None:
    """A data folder of empty files (a dry-run opens none): 2 classes, 4 clips, 12 soundscapes."""
    (root / "train_audio" / "a").mkdir(parents=True)
    (root / "train_soundscapes").mkdir()
    rows = []
    for k in range(4):
        (root / "train_audio" / "a" / f"x{k}.ogg").touch()
        rows.append({"primary_label": "a", "secondary_labels": "[]", "filename": f"a/x{k}.ogg", "author": "me"})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    taxonomy = {"primary_label": ["a", "b"], "scientific_name": ["A a", "B b"], "common_name": ["A", "B"]}
    pd.DataFrame(taxonomy).assign(class_name="Aves").to_csv(root / "taxonomy.csv", index=False)
    for name in SOUNDSCAPES:
        (root / "train_soundscapes" / f"{name}.ogg").touch()
    if validation:
        (root / "validation_soundscapes").mkdir()
        (root / "validation_soundscapes" / "v.ogg").touch()
        (root / "validation_solution.csv").write_text("row_id,a,b\nv_5,1,0\n")


def job_inputs(out: str, rule: str) -> list[str]:
    """The input line of each job of ``rule`` in a dry-run's output."""
    blocks = re.split(r"\n(?=\[)", out)
    return [re.search(r"\n    input: (.*)", b).group(1) for b in blocks if re.search(rf"\nrule {rule}:", b)]


@pytest.mark.parametrize("validation", [None, "missing"], ids=["null", "missing-folder"])
def test_without_labelled_soundscapes_the_dag_builds_them_from_a_share_set_aside(tmp_path, validation):
    fake_data(tmp_path / "data", validation=False)
    names = {None: None, "missing": "validation_soundscapes"}[validation]
    validation_cfg = {"soundscapes": names, "solution": names and "validation_solution.csv"}
    cfg = {
        "data_dir": "data",
        "validation": {**validation_cfg, "build": {"background_share": 0.3}},
        "mel_shards": {"n_train_shards": 1, "n_soundscape_shards": 2},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(tmp_path, "--configfile", "c.yaml")
    assert jobs["build_validation"] == 1 and jobs["mel_validation_shard"] == 2
    assert jobs["predict_validation"] == 3 and jobs["score_models"] == 1  # the demo config's teachers and student
    out = run_snakemake(tmp_path, "-n", "--configfile", "c.yaml").stdout
    aside = {s for s in SOUNDSCAPES if is_background(s, 0.3)}
    assert 0 < len(aside) < len(SOUNDSCAPES)
    for rule in ("mel_soundscape_shard", "embed_shard"):
        used = {s for line in job_inputs(out, rule) for s in re.findall(r"site_\d{3}", line)}
        assert used == set(SOUNDSCAPES) - aside, rule  # every other soundscape, no background
    (screen,) = job_inputs(out, "screen_backgrounds")
    assert set(re.findall(r"site_\d{3}", screen)) == aside  # BirdNET screens the backgrounds, and only them
    (build,) = job_inputs(out, "build_validation")
    assert "results/validation/background_windows.csv" in build and not re.findall(r"site_\d{3}", build)
    assert all("results/validation/soundscape_folds.csv" in line for line in job_inputs(out, "predict_validation"))
    for rule in ("score_models", "fit_ensemble"):
        assert all("results/validation/validation_solution.csv" in line for line in job_inputs(out, rule))
    assert all(line.endswith("results/validation/soundscapes") for line in job_inputs(out, "mel_validation_shard"))


def test_with_labelled_soundscapes_nothing_is_built_or_set_aside(tmp_path):
    fake_data(tmp_path / "data", validation=True)
    cfg = {"data_dir": "data", "mel_shards": {"n_train_shards": 1, "n_soundscape_shards": 2}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(tmp_path, "--configfile", "c.yaml")
    assert "build_validation" not in jobs and jobs["mel_validation_shard"] == 2
    out = run_snakemake(tmp_path, "-n", "--configfile", "c.yaml").stdout
    used = {s for line in job_inputs(out, "mel_soundscape_shard") for s in re.findall(r"site_\d{3}", line)}
    assert used == set(SOUNDSCAPES)
    assert not any("soundscape_folds" in line for line in job_inputs(out, "predict_validation"))
    assert all("data/validation_solution.csv" in line for line in job_inputs(out, "score_models"))


@pytest.mark.real_data
def test_nips4b_plans_the_builder(tmp_path, shared_data):
    (tmp_path / "real.yaml").write_text(yaml.safe_dump({"data_dir": str(shared_data)}))
    jobs = planned_jobs(tmp_path, "--configfile", str(REPO / "configs" / "nips4b.yaml"), "real.yaml")
    assert jobs["build_validation"] == 1 and jobs["mel_validation_shard"] == 4 and jobs["score_models"] == 1
