"""Labelled validation soundscapes built from each fold's held-out clips, for data that has none.

Most data (NIPS4B, a user's own recordings) has weakly labelled focal clips and
unlabelled soundscapes, but no labelled soundscapes to score models, fit the
ensemble and judge INT8 on. This module builds them, fold by fold:

- each kept clip of fold k goes into one slot (``slot_s`` seconds, the scored
  window) of a soundscape that holds fold k's clips only, so that fold k's model,
  which never trained on them, can predict every window of it;
- a clip longer than a slot is cropped to its best window (the quality filter's
  ``best_windows``, each one slot long); a shorter one is placed at a random offset
  inside its slot; ``fill_share`` of the slots hold a clip, the others only background;
- each slot lies on a 5 s background window of its own, drawn from the windows of the
  recordings set aside from ``train_soundscapes/`` (``birdclef.backgrounds``) in
  which BirdNET hears no taxonomy species (``birdclef.background_screen``);
  synthetic noise when there is none;
- the clip is laid on it at an SNR drawn from ``snr_db``: its RMS against the
  background's over the same samples;
- a slot's positives are its clip's primary label and its secondary labels that are
  classes of the taxonomy; an empty slot is negative for every class. The labels are
  as weak as the clips': a secondary species may call outside the cropped window, and
  a background may hold a call BirdNET did not hear.

Planning (which clip, where, how loud, on what) is separate from rendering, so the
plan is a table that tests and the log can read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef import synth
from birdclef.atomic import atomic_dir
from birdclef.audio import write_flac
from birdclef.settings import ValidationBuildConfig

log = logging.getLogger(__name__)

SOUNDSCAPE_PREFIX = "built"
FADE_S = 0.005  # raised-cosine fade at a clip's cut edges: no click where it starts and ends
SYNTHETIC_BACKGROUND_RMS = 0.01  # -40 dBFS noise when no background recording is set aside
MAX_PEAK = 0.99  # a mix that would clip is scaled down whole (the SNRs are kept)
SLOT_COLUMNS = ["soundscape", "fold", "slot", "row_id", "start_s", "end_s", "clip_id", "path", "labels"]
SLOT_COLUMNS += ["clip_start_s", "clip_s", "place_s", "snr_db"]
SOUNDSCAPE_COLUMNS = ["soundscape", "fold", "index", "seconds", "n_slots", "n_clips"]
BACKGROUND_COLUMNS = ["soundscape", "slot", "background", "background_start_s"]


def soundscape_name(fold: int, index: int) -> str:
    """The file stem of fold ``fold``'s ``index``-th built soundscape (the row ids start with it)."""
    return f"{SOUNDSCAPE_PREFIX}_fold{fold}_{index:03d}"


def held_out_clips(clips: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    """The kept clips of dedup's table, each with the fold it is held out in (folds.csv), by fold then clip id."""
    kept = clips[clips["keep"]] if "keep" in clips.columns else clips
    fold_of = folds.set_index("clip_id")["fold"]
    missing = sorted(set(kept["clip_id"]) - set(fold_of.index))
    if missing:
        raise ValueError(f"{len(missing)} kept clips have no fold in folds.csv, e.g. {missing[:3]}")
    stray = sorted(set(fold_of.index) - set(kept["clip_id"]))
    if stray:
        raise ValueError(f"folds.csv lists {len(stray)} clips that are not kept clips, e.g. {stray[:3]}")
    out = kept.assign(fold=kept["clip_id"].map(fold_of).astype(int))
    return out.sort_values(["fold", "clip_id"]).reset_index(drop=True)


def slot_labels(primary: str, secondary: Sequence[str], classes: Sequence[str]) -> list[str]:
    """A slot's positives: the clip's primary label, then its secondary labels that are classes, sorted."""
    known = set(classes)
    if primary not in known:
        raise ValueError(f"primary label {primary!r} is not a class of the taxonomy")
    return [primary, *sorted({s for s in secondary if s in known} - {primary})]


def crop(
    duration_s: float, best_windows: Sequence[float], slot_s: float, rng: np.random.Generator
) -> tuple[float, float, float]:
    """(start in the clip, seconds used, offset inside the slot) of a clip of ``duration_s``.

    Longer than a slot: its best window (the filter's first, a slot long), kept inside the
    clip. Else the whole clip at a random offset inside the slot.
    """
    if duration_s > slot_s:
        best = float(best_windows[0]) if len(best_windows) else (duration_s - slot_s) / 2
        return min(max(best, 0.0), duration_s - slot_s), slot_s, 0.0
    return 0.0, duration_s, float(rng.uniform(0.0, slot_s - duration_s))


def plan_validation(
    held_out: pd.DataFrame,
    classes: Sequence[str],
    cfg: ValidationBuildConfig,
    slot_s: float,
    backgrounds: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(slots, soundscapes, background slots): where every held-out clip goes, and what lies under every slot.

    ``held_out``: clip_id, path, primary_label, secondary_labels, duration_s, best_windows,
    fold (``held_out_clips``). Each clip fills exactly one slot; fold k gets the fewest
    soundscapes with at least ``1 / fill_share`` slots per clip. ``backgrounds``: the pool of
    background windows (background, start_s), each a slot long; every slot of every
    soundscape draws one, with replacement. None or empty: synthetic noise, and no
    background slots. Deterministic in ``cfg.seed``, fold by fold.
    """
    slots_per = int(cfg.soundscape_seconds // slot_s + 1e-9)
    if slots_per < 1:
        raise ValueError(f"a built soundscape of {cfg.soundscape_seconds} s holds no slot of {slot_s} s")
    seconds = slots_per * slot_s
    pool = backgrounds if backgrounds is not None else pd.DataFrame(columns=["background", "start_s"])
    slot_rows, soundscape_rows, background_rows = [], [], []
    for fold, group in held_out.groupby("fold", sort=True):
        fold = int(fold)
        rng = np.random.default_rng([cfg.seed, fold])
        n_soundscapes = math.ceil(len(group) / (cfg.fill_share * slots_per) - 1e-9)
        positions = rng.choice(n_soundscapes * slots_per, size=len(group), replace=False)
        for index in range(n_soundscapes):
            name = soundscape_name(fold, index)
            if len(pool):
                drawn = pool.iloc[rng.integers(len(pool), size=slots_per)]
                for slot, (bg, start) in enumerate(zip(drawn["background"], drawn["start_s"], strict=True)):
                    background_rows.append([name, slot, str(bg), float(start)])
            n_clips = int(np.sum(positions // slots_per == index))
            soundscape_rows.append([name, fold, index, seconds, slots_per, n_clips])
        for position, clip in zip(positions, group.itertuples(index=False), strict=True):
            index, slot = divmod(int(position), slots_per)
            name = soundscape_name(fold, index)
            clip_start, clip_s, place = crop(float(clip.duration_s), list(clip.best_windows), slot_s, rng)
            secondary = [] if clip.secondary_labels is None else list(clip.secondary_labels)
            labels = slot_labels(clip.primary_label, secondary, classes)
            end = (slot + 1) * slot_s
            slot_rows.append(
                [name, fold, slot, f"{name}_{round(end)}", slot * slot_s, end, clip.clip_id, str(clip.path)]
                + [" ".join(labels), clip_start, clip_s, place, float(rng.uniform(*cfg.snr_db))]
            )
    slots = pd.DataFrame(slot_rows, columns=SLOT_COLUMNS).sort_values(["fold", "soundscape", "slot"])
    soundscapes = pd.DataFrame(soundscape_rows, columns=SOUNDSCAPE_COLUMNS)
    return slots.reset_index(drop=True), soundscapes, pd.DataFrame(background_rows, columns=BACKGROUND_COLUMNS)


def solution_table(slots: pd.DataFrame, soundscapes: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Kaggle's solution form: row_id (``<soundscape>_<end second>``) and one 0/1 column per class, every slot."""
    row_ids = []
    for s in soundscapes.itertuples(index=False):
        slot_s = s.seconds / s.n_slots
        row_ids += [f"{s.soundscape}_{round((k + 1) * slot_s)}" for k in range(s.n_slots)]
    truth = pd.DataFrame(0, index=pd.Index(row_ids, name="row_id"), columns=list(classes), dtype=np.int8)
    for row_id, labels in zip(slots["row_id"], slots["labels"], strict=True):
        truth.loc[row_id, labels.split()] = 1
    return truth.reset_index()


def _fade(piece: np.ndarray, sr: int) -> np.ndarray:
    n = min(int(FADE_S * sr), len(piece) // 2)
    if n < 2:
        return piece
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
    out = piece.astype(np.float64, copy=True)
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def render_background(
    soundscape: pd.Series,
    backgrounds: pd.DataFrame,
    cfg: ValidationBuildConfig,
    sr: int,
    load: Callable[[str], np.ndarray],
) -> np.ndarray:
    """The background of one built soundscape (float64 at ``sr``, at ``background_gain_db``).

    ``backgrounds``: its background slots (slot, background, background_start_s); each slot's
    window is cut from its recording and faded at both ends, so that no click marks a slot's
    edge. None of them: quiet synthetic noise.
    """
    n = round(soundscape["seconds"] * sr)
    if backgrounds.empty:
        rng = np.random.default_rng([cfg.seed, int(soundscape["fold"]), int(soundscape["index"]), 1])
        out = synth.background(rng, n, sr).astype(np.float64) * SYNTHETIC_BACKGROUND_RMS
    else:
        out = np.zeros(n, np.float64)
        slot_n = round(n / soundscape["n_slots"])
        for row in backgrounds.itertuples(index=False):
            audio = load(row.background)
            if len(audio) == 0:
                raise ValueError(f"background {row.background} holds no audio")
            start = round(row.background_start_s * sr)
            piece = audio[start : start + slot_n]
            if len(piece) < slot_n:  # a decoded file a few samples shorter than its header said
                piece = np.tile(audio, -(-(start + slot_n) // len(audio)))[start : start + slot_n]
            out[row.slot * slot_n : (row.slot + 1) * slot_n] = _fade(piece, sr)
    return out * 10 ** (cfg.background_gain_db / 20)


def render_soundscape(
    soundscape: pd.Series,
    slots: pd.DataFrame,
    backgrounds: pd.DataFrame,
    cfg: ValidationBuildConfig,
    sr: int,
    load: Callable[[str], np.ndarray],
) -> tuple[np.ndarray, float]:
    """The audio of one built soundscape (float32 at ``sr``) and the gain it was scaled by to stay below full scale.

    ``soundscape``: a row of the plan's soundscapes; ``slots``: its slots; ``backgrounds``: its
    background slots (``render_background``); ``load(path)``: mono float32 at ``sr``.
    """
    out = render_background(soundscape, backgrounds, cfg, sr, load)
    n = len(out)
    for slot in slots.itertuples(index=False):
        audio = load(slot.path)
        a = round(slot.clip_start_s * sr)
        piece = _fade(audio[a : a + round(slot.clip_s * sr)], sr)
        i0 = round((slot.start_s + slot.place_s) * sr)
        piece = piece[: max(0, n - i0)]
        clip_rms = synth.rms(piece)
        bg_rms = float(np.sqrt(np.mean(out[i0 : i0 + len(piece)] ** 2))) if len(piece) else 0.0
        gain = bg_rms / clip_rms * 10 ** (slot.snr_db / 20) if clip_rms > 0 and bg_rms > 0 else 1.0
        out[i0 : i0 + len(piece)] += gain * piece
    peak = float(np.max(np.abs(out))) if n else 0.0
    scale = MAX_PEAK / peak if peak > MAX_PEAK else 1.0
    return (out * scale).astype(np.float32), scale


def build_validation_set(
    held_out: pd.DataFrame,
    classes: Sequence[str],
    backgrounds: pd.DataFrame | None,
    cfg: ValidationBuildConfig,
    slot_s: float,
    sr: int,
    out_dir: str | Path,
    load: Callable[[str], np.ndarray],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Plan, render and write (FLAC at ``sr``, into ``out_dir`` atomically) every built soundscape.

    ``backgrounds``: the pool of background windows (background: a recording's path,
    start_s), a slot long each; None or empty: synthetic noise. Returns the solution, the
    soundscapes (with their fold), the slots, the background slots, and the first
    soundscape's audio (for the report's figure). ``load(path)`` decodes to mono float32 at ``sr``.
    """
    if held_out.empty:
        raise ValueError("no held-out clips to build validation soundscapes from")
    pool = pd.DataFrame(columns=["background", "start_s"]) if backgrounds is None else backgrounds
    pool = pool.assign(stem=[Path(str(p)).stem for p in pool["background"]])  # the same order on every machine
    pool = pool.sort_values(["stem", "start_s"]).reset_index(drop=True)
    slots, soundscapes, under = plan_validation(held_out, classes, cfg, slot_s, pool)
    if sorted(slots["clip_id"]) != sorted(held_out["clip_id"]):  # every held-out clip, once
        raise RuntimeError("the plan does not hold every held-out clip exactly once")
    if len(pool):
        log.info(
            "backgrounds: %d windows of %d recordings for %d slots (%d distinct windows used)",
            len(pool),
            pool["stem"].nunique(),
            len(under),
            len(under.drop_duplicates(["background", "background_start_s"])),
        )
    else:
        log.warning("no background windows: built soundscapes lie on synthetic noise")
    cache: dict[str, np.ndarray] = {}
    shared = set(pool["background"])

    def load_cached(path: str) -> np.ndarray:
        if path in shared:  # each background recording lies under many slots
            if path not in cache:
                cache[path] = load(path)
            return cache[path]
        return load(path)

    first = np.zeros(0, dtype=np.float32)
    scaled = 0
    with atomic_dir(out_dir) as tmp:
        for k, soundscape in soundscapes.iterrows():
            name = soundscape["soundscape"]
            own, bg = slots[slots["soundscape"] == name], under[under["soundscape"] == name]
            audio, scale = render_soundscape(soundscape, own, bg, cfg, sr, load_cached)
            scaled += scale < 1
            write_flac(Path(tmp) / f"{name}.flac", audio, sr)
            if k == 0:
                first = audio
    if scaled:
        log.info("%d of %d soundscapes scaled down to stay below full scale", scaled, len(soundscapes))
    for fold, s in soundscapes.groupby("fold"):
        clips, n_slots = int(s["n_clips"].sum()), int(s["n_slots"].sum())
        log.info(
            "fold %d: %d held-out clips, %d slots (%d filled), %d soundscapes", fold, clips, n_slots, clips, len(s)
        )
    return solution_table(slots, soundscapes, classes), soundscapes, slots, under, first
