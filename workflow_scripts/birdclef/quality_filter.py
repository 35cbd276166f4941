"""Quality filter: drop training clips that are most likely empty or wrongly labelled.

Per clip it derives, from the BirdNET detections: the best confidence for the
clip's own species (when BirdNET knows it, matched by scientific name), the best
confidence for any animal, and the fraction of 3 s segments with a detection.
Species that BirdNET does not know (insects, frogs, made-up demo species) fall
back to a spectral activity measure above ``energy_min_hz`` (:func:`band_activity`). No class is ever cut below
``min_clips_per_class``: the rarest classes weigh most in macro ROC-AUC.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.ndimage import uniform_filter1d

from birdclef.parallel import ordered_map
from birdclef.settings import FilterConfig

log = logging.getLogger(__name__)

SEGMENT_S = 3.0  # BirdNET's segment length


def is_animal(scientific_name: str | pd.Series, common_name: str | pd.Series) -> bool | pd.Series:
    """BirdNET's non-animal classes (``Engine_Engine``, ``Human vocal_Human vocal``) repeat one name.

    Works on single names and, element-wise, on columns.
    """
    return scientific_name != common_name


def band_activity(path: str, cfg: FilterConfig) -> np.ndarray:
    """How far (dB) each 3 s segment's spectrum above ``energy_min_hz`` rises over a noise-like fit.

    Per segment: the power spectrum averaged over the segment (32 ms frames), in
    dB, smoothed over about 200 Hz, and fitted by a straight line in log
    frequency, which is the shape of wind, rain and pink-to-brown noise. The
    score is the largest bump above that line. A call, a buzz or a chorus puts
    energy in a band of its own and stands out; noise does not (synthetic demo
    backgrounds score at most 1.3 dB). Unlike a level above the clip's quietest
    frames, this needs no silence in the clip: a cicada that fills a 3 s clip
    counts as active.
    """
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    n_fft = 1 << int(np.ceil(np.log2(0.032 * sr)))
    hop = n_fft // 2
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    band = (freqs >= cfg.energy_min_hz) & (freqs <= 0.95 * sr / 2)
    if band.sum() < 16:
        raise ValueError(f"{path}: {sr} Hz audio has no band above energy_min_hz = {cfg.energy_min_hz:.0f} Hz")
    fit = np.vstack([np.log(freqs[band]), np.ones(int(band.sum()))]).T
    smooth = max(1, round(200 / (sr / n_fft)))
    window = np.hanning(n_fft).astype(np.float32)
    seg = int(SEGMENT_S * sr)
    scores = []
    for start in range(0, max(len(mono), 1), seg):
        chunk = mono[start : start + seg]
        if len(chunk) < n_fft:
            chunk = np.pad(chunk, (0, n_fft - len(chunk)))
        frames = np.lib.stride_tricks.sliding_window_view(chunk, n_fft)[::hop] * window
        power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2)[:, band].mean(axis=0)
        db = uniform_filter1d(10 * np.log10(power + 1e-12), smooth)
        coef, *_ = np.linalg.lstsq(fit, db, rcond=None)
        scores.append(float((db - fit @ coef).max()))
    return np.array(scores)


def _best_windows(scores: np.ndarray, duration: float, cfg: FilterConfig) -> list[float]:
    """Starts of ``window_s`` windows centred on the best-scoring segments, best first."""
    order = np.argsort(-scores, kind="stable")[: cfg.n_best_windows]
    last = max(0.0, duration - cfg.window_s)
    starts = [float(np.clip(i * SEGMENT_S + SEGMENT_S / 2 - cfg.window_s / 2, 0.0, last)) for i in order]
    return list(dict.fromkeys(round(s, 3) for s in starts))


def birdnet_names_of(taxonomy: pd.DataFrame, birdnet_species: Mapping[str, str]) -> dict[str, str]:
    """primary_label -> the scientific name BirdNET reports for it ("" when BirdNET does not know it).

    Matched by scientific name, else by common name (case-insensitive), which
    catches renamed genera: NIPS4B's Regulus ignicapillus and Sylvia undata are
    BirdNET v2.4's Regulus ignicapilla and Curruca undata.
    """
    by_common = {common.lower(): sci for sci, common in birdnet_species.items()}
    out = {}
    for row in taxonomy.itertuples(index=False):
        sci = str(row.scientific_name)
        common = str(getattr(row, "common_name", "")).lower()
        out[row.primary_label] = sci if sci in birdnet_species else by_common.get(common, "")
    return out


def score_clips(
    clips: pd.DataFrame,
    detections: pd.DataFrame,
    taxonomy: pd.DataFrame,
    birdnet_species: Mapping[str, str],
    cfg: FilterConfig,
    energy: dict[str, np.ndarray] | None = None,
    scan_errors: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per clip: the measures, the keep flag, the reason, the best windows and BirdNET's secondaries.

    ``detections``: clip_id, start, end, scientific_name, common_name, confidence.
    ``energy``: clip_id -> per-segment activity score (dB), needed for
    species BirdNET does not know (see :func:`band_activity`). ``scan_errors``:
    clip_id -> why BirdNET could not scan it in full; such a clip is dropped.
    ``birdnet_secondary`` lists taxonomy labels BirdNET heard with at least
    ``secondary_min_confidence`` (empty unless ``cfg.birdnet_secondary``).
    """
    sci = birdnet_names_of(taxonomy, birdnet_species)
    labels_of: dict[str, list[str]] = {}
    for label, name in sci.items():
        labels_of.setdefault(name, []).append(label)
    scan_errors = scan_errors or {}
    animals = detections[is_animal(detections["scientific_name"], detections["common_name"])]
    by_clip = {k: g for k, g in animals.groupby("clip_id", sort=False)}
    rows = []
    for clip in clips.itertuples(index=False):
        animal = by_clip.get(clip.clip_id, animals.iloc[0:0])
        n_seg = max(1, int(np.ceil(clip.duration_s / SEGMENT_S)))
        own_name = sci.get(clip.primary_label, "")
        known = own_name != ""
        own = animal[animal["scientific_name"] == own_name]
        any_conf = float(animal["confidence"].max()) if len(animal) else 0.0
        active_birdnet = animal["start"].nunique() / n_seg
        seg_scores = np.zeros(n_seg)
        if known:
            own_conf = float(own["confidence"].max()) if len(own) else 0.0
            for start, conf in zip(own["start"], own["confidence"], strict=True):
                i = min(n_seg - 1, int(round(start / SEGMENT_S)))
                seg_scores[i] = max(seg_scores[i], conf)
            quality, active = own_conf, active_birdnet
            keep = own_conf >= cfg.min_own_confidence
            reason = (
                "kept: BirdNET hears its species"
                if keep
                else f"BirdNET never hears {own_name} (best {own_conf:.2f} < {cfg.min_own_confidence})"
            )
        else:
            own_conf = float("nan")
            levels = (energy or {}).get(clip.clip_id)
            if levels is None:
                raise ValueError(
                    f"{clip.clip_id}: {own_name or clip.primary_label} is unknown to BirdNET and no energy"
                )
            seg_scores[: len(levels)] = levels[:n_seg]
            active = float(np.mean(levels >= cfg.activity_margin_db)) if len(levels) else 0.0
            quality = active
            keep = active >= cfg.min_active_fraction
            reason = (
                "kept: a sound stands out of the noise"
                if keep
                else f"no activity above {cfg.energy_min_hz:.0f} Hz (active fraction {active:.2f})"
            )
        if clip.clip_id in scan_errors:
            keep, reason = False, f"BirdNET could not scan it: {scan_errors[clip.clip_id]}"
        rows.append(
            {
                "clip_id": clip.clip_id,
                "primary_label": clip.primary_label,
                "birdnet_knows_species": known,
                "own_confidence": own_conf,
                "any_animal_confidence": any_conf,
                "active_fraction": active,
                "quality": quality,
                "keep": keep,
                "reason": reason,
                "best_windows": _best_windows(seg_scores, clip.duration_s, cfg),
                "birdnet_secondary": _secondaries(clip, animal, own_name, labels_of, cfg),
            }
        )
    return _enforce_class_minimum(pd.DataFrame(rows), cfg.min_clips_per_class)


def _secondaries(clip, animal: pd.DataFrame, own_name: str, labels_of: dict[str, list[str]], cfg: FilterConfig) -> list:
    """Taxonomy labels of other species BirdNET hears confidently in the clip, not already its labels.

    A species whose name the clip's own label shares (call and song of one bird)
    is left out: BirdNET cannot tell which of them it heard.
    """
    if not cfg.birdnet_secondary:
        return []
    heard = animal.loc[animal["confidence"] >= cfg.secondary_min_confidence, "scientific_name"].unique()
    have = {clip.primary_label, *getattr(clip, "secondary_labels", [])}
    return sorted(
        {label for name in heard if name != own_name for label in labels_of.get(name, []) if label not in have}
    )


def filter_clips(
    clips: pd.DataFrame,
    detections: pd.DataFrame,
    segments: pd.DataFrame,
    taxonomy: pd.DataFrame,
    birdnet_species: Mapping[str, str],
    cfg: FilterConfig,
    workers: int = 1,
) -> pd.DataFrame:
    """The manifest's clips with the filter's columns (see :func:`score_clips`) joined on.

    ``segments`` is the scan's per-clip table (clip_id, n_segments, duration_s,
    error); every clip must be in it. The energy fallback is computed, in
    ``workers`` processes, only for clips whose species BirdNET does not know.
    """
    missing = sorted(set(clips["clip_id"]) - set(segments["clip_id"]))
    if missing:
        raise ValueError(f"{len(missing)} clip(s) were never scanned by BirdNET, e.g. {missing[:3]}")
    errors = segments.dropna(subset=["error"]).set_index("clip_id")["error"].to_dict()
    sci = birdnet_names_of(taxonomy, birdnet_species)
    unknown = clips[clips["primary_label"].map(sci).fillna("") == ""]
    log.info(
        "%d clips of %d classes; BirdNET knows %d of the classes; energy fallback for %d clips",
        len(clips),
        clips["primary_label"].nunique(),
        sum(sci.get(label, "") != "" for label in clips["primary_label"].unique()),
        len(unknown),
    )
    levels = ordered_map(partial(band_activity, cfg=cfg), unknown["path"].tolist(), workers, chunksize=8)
    energy = dict(zip(unknown["clip_id"], levels, strict=True))
    scored = score_clips(clips, detections, taxonomy, birdnet_species, cfg, energy, errors)
    out = clips.merge(scored.drop(columns="primary_label"), on="clip_id", how="left", validate="one_to_one")
    kept = out.groupby("primary_label")["keep"].agg(["sum", "size"])
    log.info(
        "kept %d of %d clips; %d class(es) lost some",
        int(out["keep"].sum()),
        len(out),
        int((kept["sum"] < kept["size"]).sum()),
    )
    for reason, count in out.loc[~out["keep"], "reason"].str.split(r" \(").str[0].value_counts().items():
        log.info("dropped %d: %s", count, reason)
    return out


def _enforce_class_minimum(scored: pd.DataFrame, minimum: int) -> pd.DataFrame:
    """Take back a class's best dropped clips until it has ``minimum`` (or all it has)."""
    scored = scored.copy()
    for _, group in scored.groupby("primary_label", sort=False):
        short = minimum - int(group["keep"].sum())
        if short <= 0:
            continue
        dropped = group[~group["keep"]].sort_values(["quality", "clip_id"], ascending=[False, True])
        back = dropped.index[:short]
        scored.loc[back, "reason"] = "kept: class minimum (" + scored.loc[back, "reason"] + ")"
        scored.loc[back, "keep"] = True
    return scored
