import numpy as np
import pandas as pd
import pytest

from birdclef import synth
from birdclef.audio import write_ogg
from birdclef.quality_filter import band_activity, birdnet_names_of, filter_clips, is_animal, score_clips
from birdclef.settings import FilterConfig

TAXONOMY = pd.DataFrame(
    {"primary_label": ["eurrob", "madeup"], "scientific_name": ["Erithacus rubecula", "Fictornis alba"]}
)
KNOWN = {"Erithacus rubecula": "European Robin", "Turdus merula": "Eurasian Blackbird"}


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
    energy = {k: band_activity(str(tmp_path / f"{k}.ogg"), cfg) for k in ("empty", "call")}
    assert energy["call"][1] > 3 > energy["empty"].max()
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


def test_birdnet_secondary_is_off_by_default_and_adds_confident_other_species():
    taxonomy = pd.DataFrame(
        {
            "primary_label": ["eurrob", "blackb_call", "blackb_song"],
            "scientific_name": ["Erithacus rubecula", "Turdus merula", "Turdus merula"],
        }
    )
    c = clips(("a", "eurrob", 6.0)).assign(secondary_labels=[["blackb_song"]])
    d = detections(
        ("a", 0.0, 3.0, "Erithacus rubecula", "European Robin", 0.9),
        ("a", 3.0, 6.0, "Turdus merula", "Eurasian Blackbird", 0.85),
        ("a", 3.0, 6.0, "Parus major", "Great Tit", 0.95),  # not in the taxonomy
    )
    assert score_clips(c, d, taxonomy, KNOWN, FilterConfig())["birdnet_secondary"].iloc[0] == []
    on = FilterConfig(birdnet_secondary=True, secondary_min_confidence=0.8)
    assert score_clips(c, d, taxonomy, KNOWN, on)["birdnet_secondary"].iloc[0] == ["blackb_call"]
    higher = FilterConfig(birdnet_secondary=True, secondary_min_confidence=0.9)
    assert score_clips(c, d, taxonomy, KNOWN, higher)["birdnet_secondary"].iloc[0] == []


def test_a_clip_birdnet_could_not_scan_is_dropped_with_the_reason():
    c = clips(("a", "eurrob", 3.0), ("b", "eurrob", 3.0))
    d = detections(*[(k, 0.0, 3.0, "Erithacus rubecula", "European Robin", 0.9) for k in "ab"])
    out = score_clips(c, d, TAXONOMY, KNOWN, FilterConfig(min_clips_per_class=0), scan_errors={"b": "cannot decode"})
    out = out.set_index("clip_id")
    assert out.loc["a", "keep"] and not out.loc["b", "keep"]
    assert "could not scan it: cannot decode" in out.loc["b", "reason"]


def test_filter_clips_joins_the_manifest_and_computes_energy_only_where_needed(tmp_path):
    sr = 32_000
    rng = np.random.default_rng(1)
    loud = synth.colored_noise(rng, 6 * sr, 2.0) * 0.01
    loud[sr : 2 * sr] += 0.3 * synth.bout(rng, synth.random_call_type(rng, "upsweep", sr), 1.0, sr)[0][:sr]
    write_ogg(tmp_path / "m.ogg", loud, sr)
    manifest = pd.DataFrame(
        {
            "clip_id": ["k", "m"],
            "path": [str(tmp_path / "missing.ogg"), str(tmp_path / "m.ogg")],  # k's audio is never read
            "primary_label": ["eurrob", "madeup"],
            "duration_s": [3.0, 6.0],
            "author": ["x", "y"],
        }
    )
    segments = pd.DataFrame({"clip_id": ["k", "m"], "n_segments": [1, 2], "duration_s": [3.0, 6.0], "error": None})
    d = detections(("k", 0.0, 3.0, "Erithacus rubecula", "European Robin", 0.7))
    out = filter_clips(manifest, d, segments, TAXONOMY, KNOWN, FilterConfig(min_clips_per_class=0))
    assert list(out["clip_id"]) == ["k", "m"] and out["keep"].all()
    assert {"path", "author", "quality", "best_windows"} <= set(out.columns)
    with pytest.raises(ValueError, match="never scanned"):
        filter_clips(manifest, d, segments.iloc[:1], TAXONOMY, KNOWN, FilterConfig())


def test_a_buzz_that_fills_the_clip_is_active_and_noise_is_not(tmp_path):
    """No silence to measure a floor against: the measure must work on the spectrum's shape."""
    sr = 32_000
    rng = np.random.default_rng(3)
    cfg = FilterConfig()
    for name, audio in {
        "brown": synth.colored_noise(rng, 6 * sr, 2.0),
        "pink": synth.colored_noise(rng, 6 * sr, 1.0),
        "rain": synth.rain(rng, 6 * sr, sr),
        "demo_background": synth.background(rng, 6 * sr, sr),
    }.items():
        write_ogg(tmp_path / f"{name}.ogg", 0.1 * audio / np.abs(audio).max(), sr)
        assert band_activity(str(tmp_path / f"{name}.ogg"), cfg).max() < cfg.activity_margin_db, name
    buzz = synth.bandpass_noise(rng, 6 * sr, 4000, 6000, sr)
    noisy = 0.05 * synth.background(rng, 6 * sr, sr) / synth.rms(synth.background(rng, sr, sr))
    write_ogg(tmp_path / "cicada.ogg", 0.5 * (noisy + buzz / synth.rms(buzz) * 0.05) / 4, sr)
    assert (band_activity(str(tmp_path / "cicada.ogg"), cfg) > cfg.activity_margin_db).all()


def test_birdnet_names_match_by_scientific_then_common_name():
    taxonomy = pd.DataFrame(
        {
            "primary_label": ["eurrob", "firecr", "cicada"],
            "scientific_name": ["Erithacus rubecula", "Regulus ignicapillus", "Cicada orni"],
            "common_name": ["European Robin", "Common Firecrest", "Grey Cicada"],
        }
    )
    birdnet = {"Erithacus rubecula": "European Robin", "Regulus ignicapilla": "Common Firecrest"}
    assert birdnet_names_of(taxonomy, birdnet) == {
        "eurrob": "Erithacus rubecula",
        "firecr": "Regulus ignicapilla",
        "cicada": "",
    }
