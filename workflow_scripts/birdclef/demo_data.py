"""A synthetic BirdCLEF dataset, in exactly the Kaggle layout, from one seed.

It is built to be learnable but not trivial: every species has its own call,
varied per recording; training labels are weak (the species calls in only part
of a clip, some clips carry a second species, some open with a voice); the
soundscapes mix several species at lower SNR and with distance roll-off, so the
target domain differs from the focal clips. Planted duplicates and, optionally,
broken files come with their ground truth, so the filter, dedup and manifest
stages can be scored.

Layout written under ``out_dir``::

    train.csv  taxonomy.csv  sample_submission.csv  solution.csv  validation_solution.csv
    duplicates_truth.csv  messy_truth.csv
    train_audio/<label>/XC<n>.ogg  train_soundscapes/*.ogg  test_soundscapes/*.ogg
    validation_soundscapes/*.ogg

The labelled validation soundscapes are a second draw like the test set: what
ensemble weights and the INT8 gate are fitted on, so that the test score
(``solution.csv``) stays a held-out figure.

Every table is written atomically, and each audio folder is filled as a hidden
temporary folder that replaces the old one only when it is complete
(``birdclef.atomic``): a killed run never leaves half a dataset that looks whole.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef import SAMPLE_RATE, synth
from birdclef.atomic import atomic_dir, atomic_path
from birdclef.audio import read_audio, write_ogg
from birdclef.parallel import ordered_map
from birdclef.settings import WINDOW_S, DemoConfig
from birdclef.tables import write_csv

log = logging.getLogger(__name__)


_GENERA = (
    "Fictornis", "Synthia", "Simulornis", "Pseudocantor", "Virtualis", "Demonax",
    "Artifex", "Mimetica", "Falsotrilla", "Sonograma", "Chirpella", "Trillura",
)  # fmt: skip
_EPITHETS = (
    "alba", "borealis", "cantans", "dubia", "elegans", "fusca", "gracilis",
    "hirta", "insignis", "jubata", "lucida", "minor", "nitens", "obscura",
)  # fmt: skip
_INSECT_GENERA = ("Grylloidea", "Cicadina", "Stridulax", "Tettigonia")
_AUTHORS = tuple(f"Recordist {chr(65 + i)}" for i in range(16))
DUPLICATE_KINDS = ("exact", "reencoded", "gain", "trimmed")


@dataclass(frozen=True)
class Species:
    primary_label: str
    scientific_name: str
    common_name: str
    class_name: str
    call: synth.CallType


@dataclass(frozen=True)
class ClipPlan:
    """Everything needed to render one training clip, decided up front."""

    index: int
    filename: str
    species: int
    seconds: float
    pitch: float
    tempo: float
    snr_db: float
    voice_s: float  # 0: no voice at the start
    secondary: int | None  # index of a second species, or None
    author: str
    sample_rate: int = SAMPLE_RATE
    channels: int = 1


@dataclass(frozen=True)
class SoundscapePlan:
    name: str
    stream: int  # 1: train, 2: test; keeps the two sets independent
    index: int
    seconds: int
    present: tuple[int, ...] = field(default=())


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def make_species(cfg: DemoConfig) -> list[Species]:
    """The species list: call kinds cycle through every family, so that a set
    of more than eight species holds confusable pairs of the same family."""
    rng = _rng(cfg.seed, 0)
    names = [(g, e) for g in _GENERA for e in _EPITHETS]
    order = rng.permutation(len(names))
    species, codes = [], set()
    for i in range(cfg.n_species):
        kind = synth.CALL_KINDS[i % len(synth.CALL_KINDS)]
        genus, epithet = names[order[i]]
        insect = kind in synth.INSECT_KINDS
        if insect:
            genus = _INSECT_GENERA[i % len(_INSECT_GENERA)]
        code = (genus[:3] + epithet[:3]).lower()
        while code in codes:
            code = code[:5] + str(len(codes) % 10)
        codes.add(code)
        species.append(
            Species(
                primary_label=code,
                scientific_name=f"{genus} {epithet}",
                common_name=f"{epithet.capitalize()} {genus.lower()} {'cricket' if insect else 'singer'}",
                class_name="Insecta" if insect else "Aves",
                call=synth.random_call_type(rng, kind, SAMPLE_RATE),
            )
        )
    # Kaggle lists classes (taxonomy rows, submission columns) in label order.
    return sorted(species, key=lambda s: s.primary_label)


def plan_train_clips(cfg: DemoConfig, species: list[Species]) -> list[ClipPlan]:
    """Clip counts per class spread geometrically from rare to common, in random order."""
    rng = _rng(cfg.seed, 1)
    lo, hi = cfg.clips_per_species
    counts = np.round(np.geomspace(hi, lo, len(species))).astype(int)
    counts = counts[rng.permutation(len(species))]
    xc_numbers = rng.choice(np.arange(100_000, 999_999), size=int(counts.sum()) + 64, replace=False)
    plans: list[ClipPlan] = []
    for s, count in enumerate(counts):
        for _ in range(count):
            i = len(plans)
            seconds = float(np.exp(rng.uniform(*np.log(cfg.clip_seconds))))
            secondary = None
            if len(species) > 1 and rng.random() < cfg.secondary_prob:
                secondary = int(rng.choice([j for j in range(len(species)) if j != s]))
            plans.append(
                ClipPlan(
                    index=i,
                    filename=f"{species[s].primary_label}/XC{xc_numbers[i]}.ogg",
                    species=s,
                    seconds=round(seconds, 2),
                    pitch=float(rng.uniform(0.94, 1.06)),
                    tempo=float(rng.uniform(0.88, 1.12)),
                    snr_db=float(rng.uniform(*cfg.focal_snr_db)),
                    voice_s=float(rng.uniform(1.0, 3.0)) if rng.random() < cfg.voice_prob else 0.0,
                    secondary=secondary,
                    author=str(rng.choice(_AUTHORS)),
                )
            )
    return plans


def _mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal`` scaled to ``snr_db`` above ``noise`` (RMS over the calling part)."""
    s, n = synth.rms(signal), synth.rms(noise)
    if s == 0 or n == 0:
        return signal
    return signal * (n / s) * 10 ** (snr_db / 20)


def render_clip(plan: ClipPlan, species: list[Species], seed: int) -> np.ndarray:
    """A weakly labelled focal recording: the species calls in only part of it."""
    rng = _rng(seed, 10, plan.index)
    sr = plan.sample_rate
    n = int(plan.seconds * sr)
    bg = synth.background(rng, n, sr)
    out = bg.copy()
    start_s = 0.0
    if plan.voice_s:
        voice_s = min(plan.voice_s, 0.4 * plan.seconds)
        v = synth.voice(rng, voice_s, sr)
        out[: len(v)] += v * 10 ** (rng.uniform(3, 12) / 20)
        start_s = voice_s
    # The call fills 20-70 % of what is left, somewhere in it: the label is weak.
    free = plan.seconds - start_s
    call_s = max(min(1.5, free), free * rng.uniform(0.2, 0.7))
    offset = int((start_s + rng.uniform(0, free - call_s)) * sr)
    sp = species[plan.species]
    call, _ = synth.bout(rng, sp.call, call_s, sr, plan.pitch, plan.tempo)
    call = _mix_at_snr(call, bg, plan.snr_db)
    out[offset : offset + len(call)] += call[: n - offset]
    if plan.secondary is not None:
        other = species[plan.secondary]
        sec_s = min(free, rng.uniform(1.0, 4.0))
        sec, _ = synth.bout(rng, other.call, sec_s, sr, rng.uniform(0.94, 1.06), rng.uniform(0.9, 1.1))
        sec = _mix_at_snr(sec, bg, plan.snr_db - rng.uniform(3, 10))
        pos = int(rng.uniform(start_s, plan.seconds - sec_s) * sr)
        out[pos : pos + len(sec)] += sec[: n - pos]
    out = synth.normalize_peak(out, rng.uniform(-12, -3))
    if plan.channels == 2:
        delayed = np.concatenate([np.zeros(7, np.float32), out[:-7]])
        out = np.stack([out, 0.8 * delayed], axis=1)
    return out


def plan_soundscapes(
    cfg: DemoConfig, species: list[Species], stream: int, count: int, prefix: str
) -> list[SoundscapePlan]:
    rng = _rng(cfg.seed, stream)
    lo, hi = cfg.species_per_soundscape
    plans = []
    for i in range(count):
        k = int(rng.integers(lo, min(hi, len(species)) + 1))
        present = tuple(int(x) for x in sorted(rng.choice(len(species), size=k, replace=False)))
        plans.append(SoundscapePlan(f"{prefix}_{i:03d}", stream, i, cfg.soundscape_seconds, present))
    return plans


def render_soundscape(plan: SoundscapePlan, species: list[Species], cfg: DemoConfig) -> tuple[np.ndarray, np.ndarray]:
    """A long recording with several species at low SNR and distance roll-off.

    Returns the audio and its truth: a (windows x species) 0/1 matrix, where a
    window counts a species when at least half of one of its syllables is inside.
    """
    rng = _rng(cfg.seed, 20 + plan.stream, plan.index)
    sr = SAMPLE_RATE
    n = plan.seconds * sr
    bg = synth.background(rng, n, sr)
    out = bg.copy()
    n_windows = plan.seconds // WINDOW_S
    truth = np.zeros((n_windows, len(species)), dtype=np.int8)
    for s in plan.present:
        for _ in range(int(rng.integers(1, 4))):
            bout_s = float(rng.uniform(3, 12))
            start = float(rng.uniform(0, plan.seconds - bout_s))
            call, events = synth.bout(
                rng, species[s].call, bout_s, sr, rng.uniform(0.94, 1.06), rng.uniform(0.88, 1.12)
            )
            call = synth.lowpass(call, rng.uniform(5000, 12000), sr)
            call = _mix_at_snr(call, bg, rng.uniform(*cfg.soundscape_snr_db))
            i0 = int(start * sr)
            out[i0 : i0 + len(call)] += call[: n - i0]
            for a, b in events:
                a, b = a + start, b + start
                w = int((a + b) / 2 // WINDOW_S)  # the window holding the syllable's middle
                if 0 <= w < n_windows:
                    truth[w, s] = 1
    return synth.normalize_peak(out, rng.uniform(-10, -3)), truth


# --- planted duplicates and broken files -----------------------------------


def plant_duplicates(cfg: DemoConfig, plans: list[ClipPlan], audio_dir: Path) -> tuple[list[dict], list[dict]]:
    """Copies of existing clips under new names, each kind in turn.

    Returns the new train.csv rows' (source plan, new filename) and the truth rows.
    """
    rng = _rng(cfg.seed, 3)
    n = min(cfg.n_duplicates, len(plans))
    sources = rng.choice(len(plans), size=n, replace=False)
    extra, truth = [], []
    for k, src in enumerate(sources):
        plan = plans[int(src)]
        kind = DUPLICATE_KINDS[k % len(DUPLICATE_KINDS)]
        new_name = f"{plan.filename.split('/')[0]}/XC{900_000 + k:06d}.ogg"
        src_path, dst_path = audio_dir / plan.filename, audio_dir / new_name
        if kind == "exact":
            with atomic_path(dst_path) as tmp:
                shutil.copyfile(src_path, tmp)
        else:
            audio, sr = read_audio(src_path)
            if kind == "reencoded":
                write_ogg(dst_path, audio, sr, quality=0.1)
            elif kind == "gain":
                write_ogg(dst_path, audio * 10 ** (-rng.uniform(3, 9) / 20), sr)
            else:  # trimmed: 10-30 % cut off, split at random between start and end
                cut = int(len(audio) * rng.uniform(0.1, 0.3))
                a = int(cut * rng.uniform(0, 1))
                b = len(audio) - (cut - a)
                write_ogg(dst_path, audio[a:b], sr)
        extra.append({"plan": plan, "filename": new_name})
        truth.append({"original": plan.filename, "duplicate": new_name, "kind": kind})
    return extra, truth


def plant_messy(
    cfg: DemoConfig, species: list[Species], audio_dir: Path, next_index: int
) -> tuple[list[dict], list[dict]]:
    """Files and rows that a real download contains sooner or later.

    Returns train.csv rows (plan plus overrides) and truth rows saying what the
    manifest should do with each.
    """
    rng = _rng(cfg.seed, 4)
    label = species[0].primary_label
    rows: list[dict] = []
    truth: list[dict] = []

    def clip(i: int, seconds: float, **kw: object) -> ClipPlan:
        return ClipPlan(
            index=next_index + i, filename="", species=0, seconds=seconds, pitch=1.0, tempo=1.0,
            snr_db=10.0, voice_s=0.0, secondary=None, author=str(rng.choice(_AUTHORS)), **kw,
        )  # fmt: skip

    def add(kind: str, filename: str, expected: str, plan: ClipPlan, in_csv: bool = True, **over: str) -> None:
        if in_csv:
            rows.append({"plan": plan, "filename": filename, **over})
        truth.append({"filename": filename, "kind": kind, "expected": expected})

    def write(plan: ClipPlan, filename: str) -> Path:
        path = audio_dir / filename
        write_ogg(path, render_clip(plan, species, cfg.seed), plan.sample_rate)
        return path

    p = clip(0, 6.0)
    path = write(p, f"{label}/XC990001.ogg")
    data = path.read_bytes()
    _write_bytes(path, data[: int(len(data) * 0.6)])
    add("truncated", f"{label}/XC990001.ogg", "rejected", p)

    _write_bytes(audio_dir / label / "XC990002.ogg", b"")
    add("zero_length", f"{label}/XC990002.ogg", "rejected", clip(1, 5.0))

    _write_bytes(audio_dir / label / "XC990003.ogg", b"<html><body>404 Not Found</body></html>\n")
    add("not_audio", f"{label}/XC990003.ogg", "rejected", clip(2, 5.0))

    p = clip(3, 8.0, sample_rate=48_000, channels=2)
    write(p, f"{label}/XC990004.ogg")
    add("stereo_48k", f"{label}/XC990004.ogg", "kept", p)

    p = clip(4, 0.3)
    write(p, f"{label}/XC990005.ogg")
    add("too_short", f"{label}/XC990005.ogg", "rejected", p)

    add("missing_file", f"{label}/XC990006.ogg", "rejected", clip(5, 5.0))

    p = clip(6, 5.0)
    write(p, "zzzunk/XC990007.ogg")
    add("unknown_label", "zzzunk/XC990007.ogg", "rejected", p, primary_label="zzzunk")

    p = clip(7, 5.0)
    write(p, f"{label}/XC990008.ogg")
    add("not_in_train_csv", f"{label}/XC990008.ogg", "rejected", p, in_csv=False)

    add("path_escape", "../taxonomy.csv", "rejected", clip(8, 5.0))
    return rows, truth


# --- writing the dataset ----------------------------------------------------


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _train_row(plan: ClipPlan, species: list[Species], rng: np.random.Generator, filename: str, **over: str) -> dict:
    sp = species[plan.species]
    secondary = [species[plan.secondary].primary_label] if plan.secondary is not None else []
    row = {
        "primary_label": sp.primary_label,
        "secondary_labels": str(secondary),
        "type": "['call']" if sp.class_name == "Insecta" else str([str(rng.choice(["song", "call"]))]),
        "latitude": round(float(rng.uniform(8.0, 12.0)), 4),
        "longitude": round(float(rng.uniform(75.0, 78.0)), 4),
        "scientific_name": sp.scientific_name,
        "common_name": sp.common_name,
        "author": plan.author,
        "license": "CC0 (synthetic demo data)",
        "rating": float(rng.integers(1, 11) / 2),
        "url": "",
        "filename": filename,
        "collection": "DEMO",
    }
    row.update(over)
    return row


def _render_and_write_clip(args: tuple[ClipPlan, list[Species], int, Path]) -> str:
    plan, species, seed, audio_dir = args
    write_ogg(audio_dir / plan.filename, render_clip(plan, species, seed), plan.sample_rate)
    return plan.filename


def _render_and_write_soundscape(args: tuple[SoundscapePlan, list[Species], DemoConfig, Path]) -> np.ndarray:
    plan, species, cfg, out_dir = args
    audio, truth = render_soundscape(plan, species, cfg)
    write_ogg(out_dir / f"{plan.name}.ogg", audio, SAMPLE_RATE)
    return truth


def _run_all(fn: Callable, tasks: Iterable, workers: int, what: str) -> list:
    tasks = list(tasks)
    results = []
    for i, r in enumerate(ordered_map(fn, tasks, workers, chunksize=4), start=1):
        results.append(r)
        if i % 50 == 0 or i == len(tasks):
            log.info("%s: %d/%d written", what, i, len(tasks))
    return results


def generate(out_dir: str | Path, cfg: DemoConfig, workers: int = 1) -> dict:
    """Write the whole demo dataset under ``out_dir``; returns a summary of counts."""
    out_dir = Path(out_dir)
    species = make_species(cfg)
    labels = [s.primary_label for s in species]
    taxonomy = [{**{k: v for k, v in asdict(s).items() if k != "call"}, "inat_taxon_id": ""} for s in species]
    write_csv(pd.DataFrame(taxonomy), out_dir / "taxonomy.csv", index=False)

    plans = plan_train_clips(cfg, species)
    log.info("rendering %d training clips (%.0f s of audio)", len(plans), sum(p.seconds for p in plans))
    with atomic_dir(out_dir / "train_audio") as audio_dir:  # train_audio/ appears with every file planted
        _run_all(_render_and_write_clip, ((p, species, cfg.seed, audio_dir) for p in plans), workers, "train_audio")
        row_rng = _rng(cfg.seed, 5)
        rows = [_train_row(p, species, row_rng, p.filename) for p in plans]
        dup_rows, dup_truth = plant_duplicates(cfg, plans, audio_dir)
        rows += [_train_row(r["plan"], species, row_rng, r["filename"]) for r in dup_rows]
        messy_truth: list[dict] = []
        if cfg.messy:
            messy_rows, messy_truth = plant_messy(cfg, species, audio_dir, len(plans))
            for r in messy_rows:
                over = {k: v for k, v in r.items() if k not in ("plan", "filename")}
                rows.append(_train_row(r["plan"], species, row_rng, r["filename"], **over))
    write_csv(
        pd.DataFrame(dup_truth, columns=["original", "duplicate", "kind"]),
        out_dir / "duplicates_truth.csv",
        index=False,
    )
    write_csv(
        pd.DataFrame(messy_truth, columns=["filename", "kind", "expected"]), out_dir / "messy_truth.csv", index=False
    )
    train = pd.DataFrame(rows).sort_values("filename", kind="stable").reset_index(drop=True)
    write_csv(train, out_dir / "train.csv", index=False)

    # Each set has its own random stream, so adding one leaves the others' files as they were.
    for stream, count, sub, prefix in (
        (1, cfg.n_train_soundscapes, "train_soundscapes", "demo_train_ss"),
        (2, cfg.n_test_soundscapes, "test_soundscapes", "demo_test_ss"),
        (3, cfg.n_validation_soundscapes, "validation_soundscapes", "demo_val_ss"),
    ):
        ss_plans = plan_soundscapes(cfg, species, stream, count, prefix)
        log.info("rendering %d %s of %d s", count, sub, cfg.soundscape_seconds)
        with atomic_dir(out_dir / sub) as sub_dir:
            tasks = ((p, species, cfg, sub_dir) for p in ss_plans)
            truths = _run_all(_render_and_write_soundscape, tasks, workers, sub)
        if stream == 2:
            _write_solution(out_dir, ss_plans, truths, labels, "solution.csv", "sample_submission.csv")
        elif stream == 3:
            _write_solution(out_dir, ss_plans, truths, labels, "validation_solution.csv")
    return {
        "species": len(species),
        "train_clips": len(plans),
        "train_audio_seconds": round(sum(p.seconds for p in plans), 1),
        "duplicates": len(dup_truth),
        "messy": len(messy_truth),
        "train_soundscapes": cfg.n_train_soundscapes,
        "test_soundscapes": cfg.n_test_soundscapes,
        "validation_soundscapes": cfg.n_validation_soundscapes,
    }


def _write_solution(
    out_dir: Path,
    plans: list[SoundscapePlan],
    truths: list[np.ndarray],
    labels: list[str],
    solution_name: str,
    sample_name: str | None = None,
) -> None:
    """The truth per 5 s window (Kaggle's ``solution.csv`` form), and a ``sample_submission.csv`` (same rows, zeros)."""
    row_ids = [f"{p.name}_{(w + 1) * WINDOW_S}" for p in plans for w in range(p.seconds // WINDOW_S)]
    truth = np.concatenate(truths) if truths else np.zeros((0, len(labels)), dtype=np.int8)
    solution = pd.DataFrame(truth, columns=labels)
    solution.insert(0, "row_id", row_ids)
    write_csv(solution, out_dir / solution_name, index=False)
    if sample_name:
        sample = solution.copy()
        sample[labels] = 0.0
        write_csv(sample, out_dir / sample_name, index=False)
