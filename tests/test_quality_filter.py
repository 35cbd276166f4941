import numpy as np
import pandas as pd
import pytest

from birdclef import synth
from birdclef.audio import write_ogg
from birdclef.quality_filter import FilterConfig, energy_activity, is_animal, score_clips

TAXONOMY = pd.DataFrame(
    {"primary_label": ["eurrob", "madeup"], "scientific_name": ["Erithacus rubecula", "Fictornis alba"]}
)
KNOWN = {"Erithacus rubecula", "Turdus merula"}


def clips(*rows):
    return pd.DataFrame(rows, columns=["clip_id", "primary_label", "duration_s"])


def detections(*rows):
    return pd.DataFrame(rows, columns=["clip_id", "start", "end", "scientific_name", "common_name", "confidence"])


def test_known_species_kept_or_dropped_by_its_own_confidence():
    c = clips(("a", "eurrob", 9.0), ("b", "eurrob", 9.0), ("c", "eurrob", 9.0))
    d = detections(
        ("a", 3.0, 6.0, "Erithacus rubecula", "European Robin", 0.8),
        ("a", 6.0, 9.0, "Erithacus rubecula", "European Robin", 0.3),
        ("b", 0.0, 3.0, "Turdus merula", "Eurasian Blackbird", 0.9),  # wrong species
        ("c", 0.0, 3.0, "Engine", "Engine", 0.9),  # not an animal
    )
    out = score_clips(c, d, TAXONOMY, KNOWN, FilterConfig(min_clips_per_class=0)).set_index("clip_id")
    assert out.loc["a", "keep"] and out.loc["a", "own_confidence"] == pytest.approx(0.8)
    assert out.loc["a", "active_fraction"] == pytest.approx(2 / 3)
    assert out.loc["a", "best_windows"][0] == pytest.approx(2.0)  # 5 s centred on the 3-6 s segment
    assert not out.loc["b", "keep"] and "never hears Erithacus rubecula" in out.loc["b", "reason"]
    assert out.loc["b", "any_animal_confidence"] == pytest.approx(0.9)
    assert out.loc["c", "any_animal_confidence"] == 0.0


def test_class_minimum_takes_back_the_best_dropped():
    c = clips(*[(f"x{i}", "eurrob", 3.0) for i in range(4)])
    d = detections(*[(f"x{i}", 0.0, 3.0, "Erithacus rubecula", "European Robin", 0.02 * i) for i in range(4)])
    out = score_clips(c, d, TAXONOMY, KNOWN, FilterConfig(min_clips_per_class=2)).set_index("clip_id")
    assert out["keep"].sum() == 2
    assert out.loc["x3", "keep"] and out.loc["x2", "keep"]
    assert out.loc["x3", "reason"].startswith("kept: class minimum")


def test_unknown_species_fall_back_to_energy(tmp_path):
    sr = 32_000
    rng = np.random.default_rng(0)
    quiet = synth.colored_noise(rng, 9 * sr, 2.0) * 0.01  # brown noise: nothing above 2 kHz
    call = synth.random_call_type(rng, "upsweep", sr)
    loud = quiet.copy()
    song, _ = synth.bout(rng, call, 3.0, sr)
    loud[3 * sr : 6 * sr] += 0.3 * song
    write_ogg(tmp_path / "empty.ogg", quiet, sr)
    write_ogg(tmp_path / "call.ogg", loud, sr)
    cfg = FilterConfig(min_clips_per_class=0)
    energy = {k: energy_activity(str(tmp_path / f"{k}.ogg"), cfg) for k in ("empty", "call")}
    assert energy["call"][1] > energy["empty"][1] + 10
    out = score_clips(
        clips(("empty", "madeup", 9.0), ("call", "madeup", 9.0)), detections(), TAXONOMY, KNOWN, cfg, energy
    ).set_index("clip_id")
    assert out.loc["call", "keep"] and not out.loc["empty", "keep"]
    assert out.loc["call", "best_windows"][0] == pytest.approx(2.0)
    assert np.isnan(out.loc["call", "own_confidence"])
    assert "no activity above 2000 Hz" in out.loc["empty", "reason"]


def test_unknown_species_without_energy_is_an_error():
    with pytest.raises(ValueError, match="unknown to BirdNET"):
        score_clips(clips(("m", "madeup", 3.0)), detections(), TAXONOMY, KNOWN, FilterConfig())


def test_is_animal():
    assert is_animal("Erithacus rubecula", "European Robin")
    assert not is_animal("Human vocal", "Human vocal")
