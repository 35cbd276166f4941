"""Duplicate training recordings: find them, group them, keep one per group.

Two rules flag a pair of clips as duplicates:

- **metadata** (the BirdCLEF 2024 winner's rule): same author, same primary
  label and the same duration to ``duration_tol_s``. Cheap, and it catches a
  re-upload whatever was done to its audio, as long as the length is unchanged.
  Not applied where an author's durations say nothing (fixed-length cuts; see
  ``ambiguous_durations``).
- **content**: the audio fingerprints match (``similarity >= threshold``), even
  after re-encoding, a gain change, or trimming of the start and/or the end.

Flagged pairs are joined into groups (connected components); each group keeps
one clip: the longest, ties broken by the highest rating, then the smallest clip_id.

Assumption that keeps the work small: duplicates share their primary label (a
recording uploaded twice is labelled the same twice; a copy filed under another
species is not found). Only clips of one label are compared, and only when
their durations are close enough for one to be a trimmed copy of the other
(default demo: 394 pairs of 17,391; NIPS4B: 613 of 85,078).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy import fft as sp_fft
from scipy.ndimage import convolve1d, uniform_filter1d
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from birdclef.parallel import ordered_map

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.6
"""Content similarity at or above which two clips are duplicates.

Measured with this fingerprint: the planted duplicates of the demo datasets
(exact, Vorbis quality 0.1 re-encode, -3..-9 dB gain, 10-30 % trimmed) score
0.89-1.0; the most similar different recordings of one label score at most
0.27 there, and 0.14 on the real NIPS4B clips (0.19 even across labels).
Harsher copies of demo clips still score above 0.8 (Vorbis quality 0 with
+6 dB and 30 % trimmed: 0.83; resampled to 44.1 kHz stereo: 0.93). 0.6 leaves
about 0.3 on either side.
"""

# --- the fingerprint --------------------------------------------------------
# A coarse log band-energy envelope with its slow part removed:
#   mono; 32 ms Hann frames every 8 ms; energy in 16 log-spaced bands of
#   200 Hz - 8 kHz, smoothed over 3 frames; in dB, floored 60 dB below the
#   clip's loud level (99th percentile); then, per band, minus its 64 ms
#   moving average. 125 frames x 16 float32 per second: 8 KB.
# Why this, rather than landmark (spectral peak pair) hashes:
# - A lossy re-encode blurs fine spectral detail and moves weak peaks, but
#   keeps the energy in broad bands; peak pairs are fragile exactly there, and
#   our clips are short, so they would yield few hashes to vote with.
# - A gain change adds a constant in dB, which the comparison removes (it
#   centres every band); the floor is relative to the clip's own level.
# - Removing the moving average keeps the fast fluctuations: syllable onsets
#   and the texture of the background noise, which are the same in two copies
#   of one recording but independent in two recordings of one species. Without
#   it the slow call/no-call envelope dominates, and two recordings of one
#   species with their calls in similar places score as high as a trimmed copy
#   (default demo, 64 ms frames every 16 ms, no detrending: 0.87 for two
#   different recordings, 0.86 for a trimmed copy).
# - Trimming shifts the frame grid by up to half a hop (4 ms), small next to
#   the frames and the smoothing; the comparison searches every frame offset.
#   The hop matters: with 16 ms frames every 16 ms, a trimmed copy scored 0.19.
# - It is cheap: frames are cut at the file's own rate (starts rounded from
#   multiples of 8 ms, so 44.1 kHz works too) and bins above 8 kHz are ignored,
#   which gives the same features as resampling to 16 kHz without its cost.
#   About 3.5 ms of CPU per second of audio, a third of it decoding.
FP_FRAME_S = 0.032
FP_HOP_S = 0.008
FP_BANDS = 16
FP_FMIN, FP_FMAX = 200.0, 8000.0
FP_SMOOTH = np.array([0.5, 1.0, 0.5], dtype=np.float32)
FP_FLOOR_DB = 60.0
FP_DETREND = 8  # frames of the moving average that is removed (64 ms)
FRAMES_PER_S = 1 / FP_HOP_S
_READ_BLOCK = 1 << 20  # samples decoded at a time from a long file (about 30 s at 32 kHz)
_FRAMES_PER_BATCH = 4096  # frames transformed at once (16 MB at 32 kHz)

PAIR_COLUMNS = ["clip_a", "clip_b", "primary_label", "similarity", "offset_s", "metadata", "content", "rule"]
DUPLICATE_COLUMNS = ["clip_id", "kept_clip_id", "group", "rule", "similarity"]


@lru_cache(maxsize=16)
def _band_matrix(sr: int, n_fft: int) -> np.ndarray:
    """(FFT bins x bands) 0/1 matrix: each bin in the log-spaced band it falls in."""
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    edges = np.geomspace(FP_FMIN, FP_FMAX, FP_BANDS + 1)
    band = np.searchsorted(edges, freqs, side="right") - 1
    m = np.zeros((len(freqs), FP_BANDS), dtype=np.float32)
    inside = (band >= 0) & (band < FP_BANDS)
    m[np.flatnonzero(inside), band[inside]] = 1.0
    return m


def _frame_starts(n_samples: int, sr: int) -> np.ndarray:
    """First sample of every frame: multiples of the hop, rounded (so any rate works)."""
    return np.round(np.arange(0, n_samples - _n_fft(sr) + 1, FP_HOP_S * sr)).astype(np.int64)


def _n_fft(sr: int) -> int:
    return int(round(FP_FRAME_S * sr))


def _band_energy(mono: np.ndarray, starts: np.ndarray, sr: int) -> np.ndarray:
    """(frames x bands) energy of the frames of ``mono`` that begin at ``starts``."""
    n_fft = _n_fft(sr)
    window = np.hanning(n_fft).astype(np.float32)
    view = np.lib.stride_tricks.sliding_window_view(mono, n_fft)
    out = np.empty((len(starts), FP_BANDS), dtype=np.float32)
    for k in range(0, len(starts), _FRAMES_PER_BATCH):  # batches bound the memory for long files
        spec = sp_fft.rfft(view[starts[k : k + _FRAMES_PER_BATCH]] * window, axis=1)
        out[k : k + len(spec)] = (spec.real**2 + spec.imag**2) @ _band_matrix(sr, n_fft)
    return out


def _finish(energy: np.ndarray) -> np.ndarray:
    """Band energies to the fingerprint: smooth, dB, floor, remove the slow part."""
    energy = convolve1d(energy, FP_SMOOTH, axis=0, mode="nearest")
    db = 10 * np.log10(energy + 1e-12)
    # Quiet bands that a lossy encoder zeroes or fills with its own noise would
    # differ wildly in dB between two copies; flooring them makes them agree.
    db = np.maximum(db, np.percentile(db, 99) - FP_FLOOR_DB)
    return (db - uniform_filter1d(db, FP_DETREND, axis=0, mode="nearest")).astype(np.float32)


def fingerprint_audio(audio: np.ndarray, sr: int) -> np.ndarray:
    """The (frames x bands) float32 fingerprint of ``audio`` (frames, or frames x channels)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    sr = int(sr)
    if len(audio) < _n_fft(sr):
        audio = np.pad(audio, (0, _n_fft(sr) - len(audio)))
    return _finish(_band_energy(audio, _frame_starts(len(audio), sr), sr))


def fingerprint_file(path: str | Path) -> np.ndarray:
    """Decode ``path`` with soundfile and fingerprint it; the same as ``fingerprint_audio`` of the whole file.

    Long files are decoded block by block, so that an hour of 48 kHz stereo
    never sits in memory as float32 (1.4 GB); only its fingerprint (29 MB) does.
    """
    with sf.SoundFile(str(path)) as f:
        sr, total = f.samplerate, f.frames
        n_fft = _n_fft(sr)
        if total <= _READ_BLOCK:
            return fingerprint_audio(f.read(dtype="float32", always_2d=True), sr)
        starts = _frame_starts(total, sr)
        parts, buf, buf_at, k = [], np.zeros(0, dtype=np.float32), 0, 0
        for block in f.blocks(blocksize=_READ_BLOCK, dtype="float32", always_2d=True):
            buf = np.concatenate([buf, block.mean(axis=1)])
            done = int(np.searchsorted(starts + n_fft, buf_at + len(buf), side="right"))  # frames wholly read
            if done > k:
                parts.append(_band_energy(buf, starts[k:done] - buf_at, sr))
                k = done
            if k < len(starts):  # keep only what the next frame needs
                buf, buf_at = buf[starts[k] - buf_at :], int(starts[k])
    return _finish(np.concatenate(parts))


def similarity(a: np.ndarray, b: np.ndarray, min_overlap: float = 0.9) -> tuple[float, int]:
    """Best normalised cross-correlation of two fingerprints over time offsets.

    The shorter fingerprint slides along the longer one; every offset where at
    least ``min_overlap`` of the shorter one overlaps the longer is scored, so
    a trimmed copy (a sub-segment of its original) is found wherever it sits.
    At each offset every band is centred over the overlap, which removes a gain
    change; the score is the Pearson correlation of the two centred overlaps
    over all bands, -1 .. 1.

    Returns (similarity, offset): ``b[t]`` lines up with ``a[t + offset]``.
    """
    swapped = len(a) < len(b)
    long_, short = (b, a) if swapped else (a, b)
    n_long, n_short = len(long_), len(short)
    if n_short == 0:
        return float("nan"), 0
    # Centring each band first changes no score (the score centres per offset
    # anyway) but keeps the sums below small, so float64 loses nothing.
    long_ = long_.astype(np.float64) - long_.mean(axis=0, dtype=np.float64)
    short = short.astype(np.float64) - short.mean(axis=0, dtype=np.float64)
    slack = int((1.0 - min_overlap) * n_short)
    lags = np.arange(-slack, n_long - n_short + slack + 1)
    # At lag L, short[t] overlaps long_[L + t] for t in [t_lo, t_hi).
    t_lo = np.maximum(0, -lags)
    t_hi = np.minimum(n_short, n_long - lags)
    n = (t_hi - t_lo).astype(np.float64)[:, None]

    # sum over t and bands of long_[L + t] * short[t], for every lag L at once, by FFT
    size = sp_fft.next_fast_len(n_long + n_short - 1, real=True)
    spec = sp_fft.rfft(long_, size, axis=0) * np.conj(sp_fft.rfft(short, size, axis=0))
    cross = sp_fft.irfft(spec.sum(axis=1), size)[lags % size]

    def cum(x: np.ndarray) -> np.ndarray:
        return np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])

    cl, cl2, cs, cs2 = cum(long_), cum(long_**2), cum(short), cum(short**2)
    sum_l = cl[lags + t_hi] - cl[lags + t_lo]  # per band: (lags x bands)
    sum_s = cs[t_hi] - cs[t_lo]
    var_l = (cl2[lags + t_hi] - cl2[lags + t_lo]).sum(axis=1) - (sum_l**2 / n).sum(axis=1)
    var_s = (cs2[t_hi] - cs2[t_lo]).sum(axis=1) - (sum_s**2 / n).sum(axis=1)
    cov = cross - (sum_l * sum_s / n).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.sqrt(var_l * var_s)
    r[~np.isfinite(r)] = -1.0  # a flat overlap (digital silence) matches nothing
    best = int(np.argmax(r))
    lag = int(lags[best])
    return float(r[best]), -lag if swapped else lag


# --- which pairs to compare -------------------------------------------------


def _author(value: object) -> str:
    """The author as a string; missing is "" (and never matches anyone)."""
    return "" if not isinstance(value, str) and pd.isna(value) else str(value).strip()


def ambiguous_durations(clips: pd.DataFrame, duration_tol_s: float, max_per_duration: int = 2) -> pd.Series:
    """Per clip: True when more than ``max_per_duration`` clips of its author share its duration.

    A duplicate pair gives two clips of one length; more of them, of any
    label, point to fixed-length cuts (262 of the 413 NIPS4B clips, all by
    'nips4b', are 5.004 s long), a placeholder author, or an author so prolific
    that equal lengths happen by chance. The metadata rule would group unrelated
    clips there, so it is not applied to these clips (the content rule still is).
    """
    out = pd.Series(False, index=clips.index)
    authors = clips["author"].map(_author)
    named = clips[authors != ""]
    for _, group in named.groupby(authors[authors != ""]):
        dur = np.sort(group["duration_s"].to_numpy())
        lo = np.searchsorted(dur, group["duration_s"].to_numpy() - duration_tol_s, side="left")
        hi = np.searchsorted(dur, group["duration_s"].to_numpy() + duration_tol_s, side="right")
        out.loc[group.index] = (hi - lo) > max_per_duration
    return out


def candidate_pairs(clips: pd.DataFrame, max_trim: float = 0.3, duration_tol_s: float = 0.05) -> pd.DataFrame:
    """Pairs of clips that could be duplicates, with the metadata rule's verdict.

    A pair is a candidate when the two clips share the primary label and the
    shorter is at least ``1 - max_trim`` of the longer (a copy with up to
    ``max_trim`` cut off), or when the metadata rule flags it. Columns: the
    positions ``i``, ``j`` (i < j) in ``clips``, and ``metadata`` (bool).
    """
    clips = clips.reset_index(drop=True)
    ambiguous = ambiguous_durations(clips, duration_tol_s).to_numpy()
    authors = clips["author"].map(_author).to_numpy()
    rows: list[tuple[int, int, bool]] = []
    for _, group in clips.groupby("primary_label", sort=True):
        g = group.sort_values(["duration_s", "clip_id"])
        idx = g.index.to_numpy()
        dur = g["duration_s"].to_numpy()
        # every clip against the longer ones it could have been trimmed from
        longest = np.maximum(dur / max(1.0 - max_trim, 1e-9), dur + duration_tol_s)
        hi = np.searchsorted(dur, longest, side="right")
        for k in range(len(idx)):
            for m in range(k + 1, max(hi[k], k + 1)):
                i, j = sorted((int(idx[k]), int(idx[m])))
                same = (
                    authors[i] != ""
                    and authors[i] == authors[j]
                    and abs(dur[k] - dur[m]) <= duration_tol_s
                    and not (ambiguous[i] or ambiguous[j])
                )
                rows.append((i, j, bool(same)))
    return pd.DataFrame(rows, columns=["i", "j", "metadata"]).astype({"i": int, "j": int, "metadata": bool})


# --- comparing --------------------------------------------------------------


def _compare_label(task: tuple[list[str], list[tuple[int, int]], float]) -> list[tuple[float, float]]:
    """Fingerprint one label's clips and score its candidate pairs: (similarity, offset_s) per pair.

    One task per label, so that only that label's fingerprints are in memory at
    once (the real BirdCLEF sets hold hundreds of hours of audio).
    """
    paths, pairs, min_overlap = task
    needed = sorted({k for pair in pairs for k in pair})
    fps: dict[int, np.ndarray | None] = {}
    for k in needed:
        try:
            fps[k] = fingerprint_file(paths[k])
        except (sf.LibsndfileError, RuntimeError, ValueError) as err:
            log.warning("cannot fingerprint %s: %s", paths[k], err)
            fps[k] = None
    out = []
    for a, b in pairs:
        fa, fb = fps[a], fps[b]
        if fa is None or fb is None:
            out.append((float("nan"), float("nan")))
            continue
        sim, offset = similarity(fa, fb, min_overlap)
        out.append((sim, offset / FRAMES_PER_S))
    return out


def compare_candidates(
    clips: pd.DataFrame,
    threshold: float = DEFAULT_THRESHOLD,
    workers: int = 1,
    max_trim: float = 0.3,
    duration_tol_s: float = 0.05,
    min_overlap: float = 0.9,
) -> pd.DataFrame:
    """Every candidate pair (see ``candidate_pairs``) with its content similarity and verdicts.

    Columns: clip_a, clip_b, primary_label, similarity (NaN when a file could
    not be fingerprinted), offset_s (clip_b's start within clip_a, seconds),
    metadata (bool), content (similarity >= threshold), rule ("content" when
    the audio matched, else "metadata" when only the metadata rule flagged the
    pair, else "").
    """
    clips = clips.reset_index(drop=True)
    pairs = candidate_pairs(clips, max_trim, duration_tol_s)
    labels = clips["primary_label"].to_numpy()
    paths = clips["path"].astype(str).tolist()
    tasks, order = [], []
    for _, rows in pairs.groupby(labels[pairs["i"].to_numpy()], sort=True):
        members = sorted(set(rows["i"]) | set(rows["j"]))
        local = {k: n for n, k in enumerate(members)}
        local_pairs = [(local[i], local[j]) for i, j in zip(rows["i"], rows["j"], strict=True)]
        tasks.append(([paths[k] for k in members], local_pairs, min_overlap))
        order.append(rows.index.to_numpy())
    log.info("%d clips, %d candidate pairs in %d labels", len(clips), len(pairs), len(tasks))

    scores = np.full((len(pairs), 2), np.nan)
    # biggest labels first, so that no worker is left with a big one at the end
    by_cost = sorted(range(len(tasks)), key=lambda t: -len(tasks[t][1]))
    results = ordered_map(_compare_label, [tasks[t] for t in by_cost], workers)
    for done, (t, res) in enumerate(zip(by_cost, results, strict=True), start=1):
        scores[order[t]] = res
        if done % 20 == 0 or done == len(tasks):
            log.info("compared the pairs of %d/%d labels", done, len(tasks))

    out = pd.DataFrame(
        {
            "clip_a": clips["clip_id"].to_numpy()[pairs["i"].to_numpy()],
            "clip_b": clips["clip_id"].to_numpy()[pairs["j"].to_numpy()],
            "primary_label": labels[pairs["i"].to_numpy()],
            "similarity": scores[:, 0],
            "offset_s": scores[:, 1],
            "metadata": pairs["metadata"].to_numpy(dtype=bool),
        }
    )
    out["content"] = out["similarity"].ge(threshold)  # NaN compares False
    out["rule"] = np.where(out["content"], "content", np.where(out["metadata"], "metadata", ""))
    return out[PAIR_COLUMNS]


# --- groups -------------------------------------------------------------------


def group_duplicates(
    clips: pd.DataFrame, pairs: pd.DataFrame, prefer: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join duplicate pairs into groups and keep one clip per group.

    Keep rule: the longest clip (most audio; a trimmed copy loses to its
    original); ties: the highest rating (missing counts lowest), then the
    smallest clip_id, so the choice is the same on every run. With ``prefer``
    (a bool column, such as the quality filter's verdict), a group keeps one of
    its clips where that column is true whenever it has one.

    Returns (clips, duplicates):
    - ``clips`` with ``dup_group`` (the kept clip's clip_id; a clip with no
      duplicate is its own group), ``keep`` (bool) and ``dup_reason`` (words);
    - ``duplicates``: one row per clip not kept: clip_id, kept_clip_id, group,
      rule and similarity of the link that put it in the group (its pair with
      the kept clip if that pair was flagged, else its most similar flagged pair).
    """
    out = clips.reset_index(drop=True).copy()
    pairs = pairs[pairs["rule"] != ""]
    pos = pd.Series(np.arange(len(out)), index=out["clip_id"])
    i = pos.loc[pairs["clip_a"]].to_numpy()
    j = pos.loc[pairs["clip_b"]].to_numpy()
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(out), len(out)))
    _, component = connected_components(graph, directed=False)

    rating = pd.to_numeric(out["rating"], errors="coerce").fillna(-np.inf)
    preferred = out[prefer].astype(bool).to_numpy() if prefer else np.ones(len(out), dtype=bool)
    order = (
        pd.DataFrame({"c": component, "p": ~preferred, "d": -out["duration_s"], "r": -rating, "id": out["clip_id"]})
        .sort_values(["c", "p", "d", "r", "id"])
        .index.to_numpy()
    )
    first = pd.Series(order).groupby(component[order]).first()  # component -> position of the kept clip
    kept_pos = first.loc[component].to_numpy()
    out["dup_group"] = out["clip_id"].to_numpy()[kept_pos]
    out["keep"] = kept_pos == np.arange(len(out))
    size = pd.Series(component).map(pd.Series(component).value_counts()).to_numpy()

    links = _links(pairs)
    reasons, dup_rows = [], []
    for k, row in enumerate(out.itertuples(index=False)):
        if size[k] == 1:
            reasons.append("unique")
        elif row.keep:
            reasons.append(f"kept over {size[k] - 1} duplicate(s): {_why_kept(out, component, k, prefer)}")
        else:
            rule, sim, other = _link(links, row.clip_id, row.dup_group)
            via = "" if other == row.dup_group else f" via {other}"
            reasons.append(f"{rule} duplicate of {row.dup_group}{via} (similarity {sim:.2f})")
            dup_rows.append((row.clip_id, row.dup_group, row.dup_group, rule, sim))
    out["dup_reason"] = reasons
    duplicates = pd.DataFrame(dup_rows, columns=DUPLICATE_COLUMNS).astype({"similarity": float})
    return out, duplicates.sort_values(["group", "clip_id"]).reset_index(drop=True)


def _links(pairs: pd.DataFrame) -> dict[str, list[tuple[str, str, float]]]:
    """clip_id -> its flagged pairs as (other clip, rule, similarity)."""
    links: dict[str, list[tuple[str, str, float]]] = {}
    for a, b, rule, sim in zip(pairs["clip_a"], pairs["clip_b"], pairs["rule"], pairs["similarity"], strict=True):
        links.setdefault(a, []).append((b, rule, float(sim)))
        links.setdefault(b, []).append((a, rule, float(sim)))
    return links


def _link(links: dict[str, list[tuple[str, str, float]]], clip_id: str, kept: str) -> tuple[str, float, str]:
    """(rule, similarity, other clip) of the pair that ties ``clip_id`` to its group."""
    mine = links[clip_id]
    for other, rule, sim in mine:
        if other == kept:
            return rule, sim, other
    other, rule, sim = max(mine, key=lambda link: -np.inf if np.isnan(link[2]) else link[2])
    return rule, sim, other


def _why_kept(out: pd.DataFrame, component: np.ndarray, k: int, prefer: str | None) -> str:
    group = out[component == component[k]]
    if prefer:
        if group[prefer].sum() == 1:
            return f"the only one with {prefer}"
        group = group[group[prefer]]
    longest = group[group["duration_s"] == group["duration_s"].max()]
    if len(longest) == 1:
        return "longest"
    rating = pd.to_numeric(longest["rating"], errors="coerce").fillna(-np.inf)
    return "highest rating" if (rating == rating.max()).sum() == 1 else "smallest clip_id"


def dedup(
    clips: pd.DataFrame,
    threshold: float = DEFAULT_THRESHOLD,
    workers: int = 1,
    max_trim: float = 0.3,
    duration_tol_s: float = 0.05,
    prefer: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Find duplicates and keep one clip per group: (clips with dup_group/keep/dup_reason, duplicates, pairs).

    ``clips`` is the manifest's table (needs clip_id, path, primary_label,
    author, duration_s, rating). ``threshold``: content similarity that counts
    as a duplicate; ``workers``: processes (one label per task); ``max_trim``:
    the largest share of a recording a trimmed copy may lack; ``duration_tol_s``:
    the metadata rule's "same duration"; ``prefer``: see ``group_duplicates``,
    which describes the first two tables. ``pairs`` holds every compared pair
    (see ``compare_candidates``), flagged or not.
    """
    pairs = compare_candidates(clips, threshold, workers, max_trim, duration_tol_s)
    out, duplicates = group_duplicates(clips, pairs, prefer)
    log.info(
        "%d clips: %d duplicate pairs (%d by content, %d by metadata only) -> %d groups of 2+, %d clips set aside",
        len(out),
        int((pairs["rule"] != "").sum()),
        int((pairs["rule"] == "content").sum()),
        int((pairs["rule"] == "metadata").sum()),
        int(out.loc[~out["keep"], "dup_group"].nunique()),
        len(duplicates),
    )
    return out, duplicates, pairs


def dedup_filtered(
    filtered: pd.DataFrame,
    threshold: float = DEFAULT_THRESHOLD,
    workers: int = 1,
    max_trim: float = 0.3,
    duration_tol_s: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Deduplicate the quality filter's table: (clips, duplicates, compared pairs).

    Every clip takes part, dropped ones too, so that a copy is found whatever
    the filter said of it; a group keeps a clip that passed the filter when it
    has one. The filter's ``keep``/``reason`` become ``quality_keep``/``quality_reason``,
    dedup's verdict is ``dedup_keep``/``dup_reason``, and ``keep`` is both:
    what training uses. ``dup_group`` is what the fold split groups by.
    """
    clips = filtered.rename(columns={"keep": "quality_keep", "reason": "quality_reason"})
    out, duplicates, pairs = dedup(clips, threshold, workers, max_trim, duration_tol_s, prefer="quality_keep")
    out = out.rename(columns={"keep": "dedup_keep"})
    out["keep"] = out["quality_keep"] & out["dedup_keep"]
    log.info(
        "%d clips kept for training: %d dropped by the quality filter, %d more set aside as duplicates",
        int(out["keep"].sum()),
        int((~out["quality_keep"]).sum()),
        int((out["quality_keep"] & ~out["dedup_keep"]).sum()),
    )
    return out, duplicates, pairs
