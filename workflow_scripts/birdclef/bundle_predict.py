"""The bundle's ``predict.py``: test soundscapes to ``submission.csv`` with the bundle's models, standalone.

This file is copied as it is into ``results/bundle/predict.py``. It imports the standard
library, numpy, scipy, soundfile and openvino, and ai_edge_litert when a member takes
BirdNET embeddings: never torch, pandas, Snakemake or this repository, so that it runs
offline in a Kaggle notebook with a few wheels installed. It is also the workflow's own
inference: the ``infer`` rule loads this file from the bundle and calls ``run``, so the
workflow's submission and the notebook's are one computation. The pieces that training
shares with inference have their one home here and the package imports them: where a
window is cut, the resampling, the blend, the post-processing, the OpenVINO runner.

    python predict.py --test-dir /kaggle/input/birdclef-2025/test_soundscapes \\
        --out /kaggle/working/submission.csv --threads 4 --time-budget 5000

The pipeline per file: decode once (libsndfile), resample to the mel rate, cut the 5 s
windows, log-mels in numpy (``LogMel``, equal to the training frontend within 1e-4),
BirdNET embeddings on LiteRT when a member needs them; the members run on OpenVINO in
their own thread while the next files are decoded; then blend, post-processing, and the
rows laid out as the sample submission, every missing row filled with the class prior.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import logging
import math
import os
import queue
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.sparse
import soundfile as sf
from scipy.signal import resample_poly
from scipy.special import expit
from scipy.stats import rankdata

log = logging.getLogger("predict")

FORMAT_VERSION = 1
PROGRESS_EVERY = 50  # files between progress lines

# --- Audio and windows ---------------------------------------------------------------
# ``cfg`` below is anything with ``chunk_s`` and ``context_s`` (the workflow's ChunkConfig,
# or the bundle's chunk settings).


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """The file as mono float32 at its own rate, and that rate."""
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), sr


def to_rate(mono: np.ndarray, sr: int, sample_rate: int) -> np.ndarray:
    """``mono`` at ``sr`` resampled to ``sample_rate`` (the mel frontend's resampling)."""
    if sr == sample_rate:
        return mono
    g = np.gcd(sr, sample_rate)
    return resample_poly(mono, sample_rate // g, sr // g).astype(np.float32)


def cut(audio: np.ndarray, sr: int, start_s: float, cfg) -> np.ndarray:
    """``chunk_s`` from ``start_s`` with ``context_s`` on each side; zeros outside the recording.

    A recording shorter than one chunk is tiled to fill it first: a short call
    repeated is a better training chunk than the call and seconds of silence.
    """
    chunk = round(cfg.chunk_s * sr)
    if 0 < len(audio) < chunk:
        audio = np.tile(audio, -(-chunk // len(audio)))[:chunk]
    context = round(cfg.context_s * sr)
    start = round(start_s * sr) - context
    n = chunk + 2 * context
    out = np.zeros(n, dtype=np.float32)
    lo, hi = max(start, 0), min(start + n, len(audio))
    if hi > lo:
        out[lo - start : hi - start] = audio[lo:hi]
    return out


def soundscape_starts(duration_s: float, cfg) -> list[float]:
    """Every ``chunk_s`` window; a last partial one when at least half of it is audio (Kaggle files have none)."""
    n = int(duration_s // cfg.chunk_s)
    if duration_s - n * cfg.chunk_s >= cfg.chunk_s / 2:
        n += 1
    return [k * cfg.chunk_s for k in range(n)]


def window_row_id(item_id: str, start_s: float, cfg) -> str:
    """Kaggle's row id of a soundscape window: the file's stem and the window's end second."""
    return f"{item_id}_{round(start_s + cfg.chunk_s)}"


def cut_windows(audio: np.ndarray, sample_rate: int, cfg, starts: Sequence[float] | None = None):
    """Window starts (every window of a soundscape when None), the windows (n x samples) and the duration (s)."""
    duration = len(audio) / sample_rate
    starts = list(starts) if starts is not None else soundscape_starts(duration, cfg)
    windows = np.stack([cut(audio, sample_rate, s, cfg) for s in starts]) if starts else np.zeros((0, 0))
    return starts, windows, duration


# --- BirdNET's resampling --------------------------------------------------------------
# birdnetlib loads through librosa with res_type="kaiser_fast", i.e. resampy's
# windowed-sinc interpolator. The resampling filter is not a detail: on real
# recordings, scipy's default resample_poly filter (cutoff at Nyquist) changes
# the 48 kHz signal by about 8 % RMS against kaiser_fast (rolloff 0.868) and moves
# BirdNET confidences by up to 0.5. So the same filter is rebuilt here as a
# polyphase FIR and run by scipy's fast upfirdn; resampy is not needed.

BIRDNET_RATE = 48_000  # what BirdNET v2.4 takes
BIRDNET_SEGMENT = 3 * BIRDNET_RATE  # samples in one of its 3 s segments
KAISER_FAST_ZEROS = 24  # resampy kaiser_fast: zero crossings per wing
_KAISER_FAST_BETA = 9.90322
_KAISER_FAST_ROLLOFF = 0.8682120388377784


@functools.lru_cache(maxsize=16)
def kaiser_fast_fir(up: int, down: int) -> np.ndarray:
    """resampy's kaiser_fast filter as FIR taps for ``resample_poly(x, up, down, window=...)``.

    resampy's output at time t (in input samples) is sum_k h(t - k) x[k], with
    h(t) = s * W(s |t|), s = min(1, up / down), and W the Kaiser-windowed sinc
    below. resample_poly evaluates taps at t = j / up and multiplies them by up.
    """
    scale = min(1.0, up / down)
    half_len = math.floor(KAISER_FAST_ZEROS * up / scale)
    u = scale * np.arange(-half_len, half_len + 1) / up  # where W is read
    taper = np.i0(_KAISER_FAST_BETA * np.sqrt(np.clip(1 - (u / KAISER_FAST_ZEROS) ** 2, 0, None)))
    w = _KAISER_FAST_ROLLOFF * np.sinc(_KAISER_FAST_ROLLOFF * u) * taper / np.i0(_KAISER_FAST_BETA)
    return (scale * w / up).astype(np.float32)


def kaiser_fast_resample(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """``x`` resampled by up/down with resampy's kaiser_fast filter, float32."""
    if up == down:
        return np.asarray(x, dtype=np.float32)
    return resample_poly(x, up, down, window=kaiser_fast_fir(up, down)).astype(np.float32, copy=False)


def librosa_length(n_in: int, sr: int) -> tuple[int, int]:
    """(length librosa returns, samples resampy computes): the rest is zero-padded.

    resampy makes int(n * 48000 / sr) samples and librosa pads them to
    ceil(n * ratio), both in floating point. The padded zero is the last sample
    of the last segment, right before BirdNET's own zero padding, and on real
    clips it alone moves a confidence by up to 0.01, so it is reproduced.
    """
    return int(np.ceil(n_in * (float(BIRDNET_RATE) / sr))), int(n_in * float(BIRDNET_RATE) / float(sr))


def fit_end(tail: np.ndarray, offset: int, n_out: int, n_valid: int) -> np.ndarray:
    """The file's last output samples, from global index ``offset``, cut or padded to librosa's length."""
    want = n_out - offset
    if len(tail) < want:
        tail = np.concatenate([tail, np.zeros(want - len(tail), np.float32)])
    tail = tail[:want]
    if n_valid < n_out:
        tail = tail.copy()
        tail[max(0, n_valid - offset) :] = 0.0
    return tail


def resample_to_48k(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 ``audio`` at ``sr`` resampled to 48 kHz as librosa's kaiser_fast does, length included."""
    g = math.gcd(BIRDNET_RATE, sr)
    return fit_end(kaiser_fast_resample(audio, BIRDNET_RATE // g, sr // g), 0, *librosa_length(len(audio), sr))


# --- The log-mel frontend, in numpy ---------------------------------------------------


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangular filters on the HTK mel scale, unnormalised (torchaudio's ``melscale_fbanks``): (freqs x mels)."""
    freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    mel_lo, mel_hi = (2595.0 * np.log10(1.0 + f / 700.0) for f in (f_min, f_max))
    f_pts = 700.0 * (10 ** (np.linspace(mel_lo, mel_hi, n_mels + 2) / 2595.0) - 1.0)
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


class LogMel:
    """Audio windows (n x samples) -> log-mels (n x mels x frames), float32: the training frontend in numpy.

    The same computation as the workflow's ``MelFrontend`` (torchaudio's MelSpectrogram
    and AmplitudeToDB): a centred STFT with reflect padding and a periodic Hann window,
    |X| ** power, HTK mel filters, dB with each window's own ``top_db`` range, then each
    window normalised on its own. A test holds the two within 1e-4 on real audio.
    The filters are applied as a sparse matrix (945 of 65,664 weights are non-zero):
    no BLAS call, so decoding threads do not fight over OpenBLAS's own threads, which
    made the dense product 1.5x slower than torchaudio with two threads here.
    """

    def __init__(self, mel: dict) -> None:
        self.n_fft, self.hop = int(mel["n_fft"]), int(mel["hop_length"])
        self.power, self.top_db = float(mel["power"]), mel["top_db"]
        self.normalization = mel["normalization"]
        n = np.arange(self.n_fft)
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * n / self.n_fft)).astype(np.float32)
        args = (mel["sample_rate"], self.n_fft, mel["n_mels"], mel["f_min"], mel["f_max"])
        self.filters = mel_filterbank(*args)  # freqs x mels
        self.sparse_filters = scipy.sparse.csr_matrix(self.filters.T)  # mels x freqs
        self.db_scale = 10.0 if self.power == 2.0 else 20.0  # AmplitudeToDB: power or magnitude

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        pad = self.n_fft // 2
        x = np.pad(x, [(0, 0), (pad, pad)], mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft, axis=-1)[:, :: self.hop]
        stft = scipy.fft.rfft(frames * self.window, axis=-1)  # windows x frames x freqs
        if self.power == 2.0:
            spectrum = stft.real**2
            spectrum += stft.imag**2
        else:
            spectrum = np.abs(stft) ** self.power
        n, n_frames, n_freqs = spectrum.shape
        mel = np.asarray(self.sparse_filters @ spectrum.reshape(-1, n_freqs).T)  # mels x (windows * frames)
        spec = mel.reshape(-1, n, n_frames).transpose(1, 0, 2)  # windows x mels x frames
        spec = self.db_scale * np.log10(np.maximum(spec, 1e-10))
        if self.top_db is not None:
            spec = np.maximum(spec, spec.max(axis=(1, 2), keepdims=True) - float(self.top_db))
        if self.normalization == "minmax":
            lo, hi = spec.min(axis=(1, 2), keepdims=True), spec.max(axis=(1, 2), keepdims=True)
            spec = (spec - lo) / np.maximum(hi - lo, 1e-6)
        elif self.normalization == "standard":
            mean, std = spec.mean(axis=(1, 2), keepdims=True), spec.std(axis=(1, 2), ddof=1, keepdims=True)
            spec = (spec - mean) / np.maximum(std, 1e-6)
        return np.ascontiguousarray(spec, dtype=np.float32)


# --- BirdNET on LiteRT ---------------------------------------------------------------
# BirdNET's embedding is the tensor one below the classifier's output
# (``get_output_details()[0]["index"] - 1``, as birdnetlib and BirdNET-Analyzer read it).
# LiteRT frees intermediate tensors after ``invoke()`` unless the interpreter keeps them
# all (``experimental_preserve_all_tensors``): 38 ms per 3 s segment against 29 ms
# without, one thread. Kept anyway: one invoke gives both the embedding and the logits.


class BirdNetInterpreter:
    """One single-threaded LiteRT interpreter of BirdNET v2.4: segments in, (embeddings, logits) out.

    Not thread-safe: use one per thread (``invoke`` releases the GIL, so threads run in parallel).
    """

    def __init__(self, model_path: str | Path) -> None:
        from ai_edge_litert import interpreter as litert

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*preserve_all_tensors.*")
            self.interpreter = litert.Interpreter(
                model_path=str(model_path), num_threads=1, experimental_preserve_all_tensors=True
            )
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        output = self.interpreter.get_output_details()[0]
        self.logits_index, self.n_logits = output["index"], int(output["shape"][-1])
        self.embedding_index = self.logits_index - 1
        self.embedding_dim = int(self.interpreter.get_tensor_details()[self.embedding_index]["shape"][-1])
        shape = tuple(self.interpreter.get_input_details()[0]["shape"])
        if shape != (1, BIRDNET_SEGMENT):
            raise RuntimeError(f"unexpected BirdNET input shape {shape}")

    def __call__(self, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n x 1024 embeddings, n x 6522 logits), float32, of ``segments`` (n x 144000 samples at 48 kHz)."""
        segments = np.ascontiguousarray(segments, dtype=np.float32).reshape(-1, BIRDNET_SEGMENT)
        embeddings = np.empty((len(segments), self.embedding_dim), np.float32)
        logits = np.empty((len(segments), self.n_logits), np.float32)
        for k, seg in enumerate(segments):
            self.interpreter.set_tensor(self.input_index, seg[np.newaxis])
            self.interpreter.invoke()
            embeddings[k] = self.interpreter.get_tensor(self.embedding_index)[0]
            logits[k] = self.interpreter.get_tensor(self.logits_index)[0]
        return embeddings, logits


class InterpreterPool:
    """``n`` interpreters made by ``make``, one taken per task (threads share the pool)."""

    def __init__(self, make: Callable[[], Callable], n: int) -> None:
        self.free: queue.Queue = queue.Queue()
        for _ in range(max(1, n)):
            self.free.put(make())

    def run(self, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        interpreter = self.free.get()
        try:
            return interpreter(segments)
        finally:
            self.free.put(interpreter)


def segment_offsets(segment_starts: Sequence[float]) -> np.ndarray:
    """Start sample (48 kHz) of each BirdNET segment in a window."""
    return np.round(np.asarray(segment_starts) * BIRDNET_RATE).astype(int)


def window_segments(window: np.ndarray, segment_starts: Sequence[float]) -> np.ndarray:
    """The 3 s segments (n x 144000) BirdNET embeds of one window of 48 kHz audio (zero-padded past its end)."""
    out = np.zeros((len(segment_starts), BIRDNET_SEGMENT), np.float32)
    for k, start in enumerate(segment_offsets(segment_starts)):
        piece = window[start : start + BIRDNET_SEGMENT]
        out[k, : len(piece)] = piece
    return out


def combine(embeddings: np.ndarray, logits: np.ndarray, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per window, the mean embedding and the maximum logit of its segments (segments in window order)."""
    emb = embeddings.reshape(n_windows, -1, embeddings.shape[-1]).mean(axis=1)
    per_segment = len(embeddings) // max(n_windows, 1)
    return emb, logits.reshape(n_windows, per_segment, logits.shape[-1]).max(axis=1)


@dataclass(frozen=True)
class _Window:
    chunk_s: float
    context_s: float = 0.0


def embed_audio(
    audio_48k: np.ndarray, starts: Sequence[float], segment_starts: Sequence[float], chunk_s: float, pool
) -> tuple[np.ndarray, np.ndarray]:
    """Per window starting at ``starts`` (s) of a recording at 48 kHz: its embedding and its logits (all classes).

    The window is its own ``chunk_s`` seconds (no context), cut as the mel windows are
    cut; BirdNET embeds the 3 s segments at ``segment_starts`` in it; the window's
    embedding is their mean, its logit per class their maximum. The one definition of a
    window's embedding, used by the embedding cache and by inference alike.
    """
    windows = [cut(audio_48k, BIRDNET_RATE, s, _Window(chunk_s)) for s in starts]
    if not windows:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    emb, logits = pool.run(np.concatenate([window_segments(w, segment_starts) for w in windows]))
    return combine(emb, logits, len(windows))


# --- OpenVINO ----------------------------------------------------------------------

PRECISIONS = ("f32", "int8")
# The quantised operations NNCF inserts: FakeQuantize on activations; weights become
# int8 constants behind a Convert once saved.
QUANTIZED_OPS = frozenset({"FakeQuantize"})
_core = None


def core():
    """This process's one ``openvino.Core`` (created on first use: plugins load once, settings stay per compile)."""
    global _core
    if _core is None:
        import openvino as ov

        _core = ov.Core()
    return _core


def is_quantized(model) -> bool:
    """Whether an ``openvino.Model`` holds NNCF's quantisation operations."""
    return any(op.get_type_name() in QUANTIZED_OPS for op in model.get_ops())


def compile_ir(xml_path: str | Path, threads: int = 2, precision: str = "f32"):
    """An IR compiled for the CPU in true FP32 arithmetic (``precision`` "f32"), or its INT8 quantised operations.

    "int8" expects an IR with quantisation operations (and "f32" one without): a swapped
    path is an error, not a silently different benchmark. Both compile with the f32
    hint, so what is not quantised runs in FP32 rather than the CPU's default bf16.
    THROUGHPUT: the windows are scored offline in many independent batches; the
    plugin then runs one stream per core (each single-threaded, no sync between
    layers), and ``predict_ir`` keeps every stream busy with its own request.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    model = core().read_model(Path(xml_path))
    if is_quantized(model) != (precision == "int8"):
        kind = "quantised" if is_quantized(model) else "not quantised"
        raise ValueError(f"{xml_path}: the IR is {kind}, which precision {precision!r} does not expect")
    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": int(threads),
        "PERFORMANCE_HINT": "THROUGHPUT",
    }
    return core().compile_model(model, "CPU", config)


def _batches(windows: np.ndarray | Iterable[np.ndarray], batch_size: int) -> Iterable[np.ndarray]:
    if isinstance(windows, np.ndarray):
        for start in range(0, len(windows), batch_size):
            yield windows[start : start + batch_size]
    else:
        yield from windows


def predict_ir(compiled, windows: np.ndarray | Iterable[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Outputs (n x classes, float32) of a compiled IR on ``windows``, in input order.

    ``windows``: one array (n x ...), cut into batches of ``batch_size``, or an iterable
    of such batches taken as they come (so a reader can stream them). Batches run on an
    ``AsyncInferQueue`` of the plugin's optimal number of requests; a callback copies
    each result into its batch's slot, since a request reuses its output buffer.
    """
    import openvino as ov

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    try:
        jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    except RuntimeError:
        jobs = 2
    requests = ov.AsyncInferQueue(compiled, max(jobs, 1))
    results: dict[int, np.ndarray] = {}

    def done(request, index: int) -> None:
        results[index] = request.get_output_tensor(0).data.copy()

    requests.set_callback(done)
    n = 0
    for n, batch in enumerate(_batches(windows, batch_size), start=1):
        requests.start_async(np.ascontiguousarray(batch, dtype=np.float32), userdata=n - 1)
    requests.wait_all()
    if n == 0:
        return np.zeros((0, compiled.outputs[0].get_partial_shape()[1].get_length()), dtype=np.float32)
    return np.concatenate([results[i] for i in range(n)]).astype(np.float32, copy=False)


# --- Blend and post-processing --------------------------------------------------------

BLEND_SPACES = ("prob", "rank", "logit")
LOGIT_EPS = 1e-6


def to_space(probs: np.ndarray, space: str) -> np.ndarray:
    """Probabilities in the space where they are averaged: as they are, per-class ranks in 0..1, or logits."""
    if space not in BLEND_SPACES:
        raise ValueError(f"space must be one of {BLEND_SPACES}, got {space!r}")
    p = np.asarray(probs, dtype=np.float64)
    if space == "prob":
        return p
    if space == "rank":
        if len(p) < 2:
            return np.full_like(p, 0.5)
        return (rankdata(p, axis=0) - 1) / (len(p) - 1)
    p = np.clip(p, LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p / (1 - p))


def blend(member_probs: Sequence[np.ndarray], weights: Sequence[float], space: str) -> np.ndarray:
    """The weighted mean of the members in ``space`` (weights normalised to sum 1), back as scores in 0..1.

    Rank space ranks the rows given; the metric is per class over all rows, so that is the right set.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mixed = sum(wi * to_space(p, space) for wi, p in zip(w, member_probs, strict=True) if wi > 0)
    return np.clip(expit(mixed) if space == "logit" else mixed, 0.0, 1.0)


# Post-processing of soundscape predictions: use what the neighbouring windows and the
# whole file say. Three steps, in this order, each one off at its neutral setting:
# ``smooth`` (weighted mean of previous, own and next window), ``power_low_ranked``
# (per file, the classes outside the top-k get p ** power), ``scale_by_file_max``
# (p * ((1 - a) + a * filemax)). Rows of one file are contiguous and in time order; no
# step mixes windows of different files.


def _checked(probs: np.ndarray, file_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """probs as float64, each row's file start and file length; errors if files are not contiguous."""
    p = np.asarray(probs, dtype=np.float64)
    ids = np.asarray(file_ids)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (windows x classes), got shape {p.shape}")
    if ids.shape != (len(p),):
        raise ValueError(f"file_ids has shape {ids.shape} for {len(p)} windows")
    if np.isnan(p).any():
        raise ValueError("probs has NaN values")
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, dtype=int)
    if len(starts) != len(np.unique(ids)):
        raise ValueError("the windows of each file must be contiguous rows")
    return p, starts, np.diff(np.r_[starts, len(p)])


def smooth(
    probs: np.ndarray, file_ids: Sequence[str], weights: Sequence[float] | None, edge: Sequence[float]
) -> np.ndarray:
    """Weighted mean of previous, own and next window (``weights``); at a file's ends, own and neighbour (``edge``).

    A file with one window is left as is; ``weights=None`` leaves everything as is.
    """
    p, starts, lengths = _checked(probs, file_ids)
    if weights is None or len(p) == 0:
        return p.copy()
    w_prev, w_self, w_next = (float(w) for w in weights)
    e_self, e_other = (float(e) for e in edge)
    first = np.zeros(len(p), dtype=bool)
    first[starts] = True
    last = np.zeros(len(p), dtype=bool)
    last[starts + lengths - 1] = True
    # Shifted copies; where the shift crosses a file boundary the value is masked out below.
    prev = np.vstack([p[:1], p[:-1]])
    nxt = np.vstack([p[1:], p[-1:]])
    out = w_prev * prev + w_self * p + w_next * nxt
    only_first = first & ~last
    only_last = last & ~first
    out[only_first] = e_self * p[only_first] + e_other * nxt[only_first]
    out[only_last] = e_self * p[only_last] + e_other * prev[only_last]
    out[first & last] = p[first & last]
    return np.clip(out, 0.0, 1.0)


def power_low_ranked(probs: np.ndarray, file_ids: Sequence[str], top_k: int, power: float) -> np.ndarray:
    """Per file, ``p ** power`` for the classes outside the top_k by their highest probability in the file.

    Ties in the file maximum go to the lower class index, so the result does not depend on sort details.
    """
    p, starts, lengths = _checked(probs, file_ids)
    if power == 1 or len(p) == 0 or top_k >= p.shape[1]:
        return p.copy()
    file_max = np.maximum.reduceat(p, starts, axis=0)
    order = np.argsort(-file_max, axis=1, kind="stable")
    keep = np.zeros_like(file_max, dtype=bool)
    np.put_along_axis(keep, order[:, :top_k], True, axis=1)
    keep = np.repeat(keep, lengths, axis=0)
    return np.clip(np.where(keep, p, np.power(np.clip(p, 0.0, 1.0), power)), 0.0, 1.0)


def scale_by_file_max(probs: np.ndarray, file_ids: Sequence[str], weight: float) -> np.ndarray:
    """``p * ((1 - weight) + weight * filemax)``, filemax the class's highest probability in the file."""
    p, starts, lengths = _checked(probs, file_ids)
    if weight == 0 or len(p) == 0:
        return p.copy()
    file_max = np.repeat(np.maximum.reduceat(p, starts, axis=0), lengths, axis=0)
    return np.clip(p * ((1 - weight) + weight * file_max), 0.0, 1.0)


def postprocess(probs: np.ndarray, file_ids: Sequence[str], cfg: dict) -> np.ndarray:
    """Smoothing, then the power on low-ranked classes, then scaling by the file maximum (``postprocess:`` keys)."""
    p = smooth(probs, file_ids, cfg["smoothing"], cfg["smoothing_edge"])
    p = power_low_ranked(p, file_ids, cfg["low_rank_top_k"], cfg["low_rank_power"])
    return scale_by_file_max(p, file_ids, cfg["file_max_weight"])


# --- The submission -----------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it when the block succeeds (never a half-written file).

    The workflow's own helper (birdclef.atomic) does the same; this script imports nothing of the workflow.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_table(path: str | Path, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """A CSV file, atomically; floats as their shortest exact repr (as pandas writes them)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(columns)
        out.writerows(rows)


def read_sample(path: str | Path | None, classes: Sequence[str]) -> tuple[list[str], list[str]]:
    """The sample submission's columns and row ids; without one, row_id and ``classes`` and no rows."""
    if path is None:
        return ["row_id", *classes], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        columns = next(reader, [])
        row_ids = [row[0] for row in reader if row]
    if not columns or columns[0] != "row_id":
        raise ValueError(f"{path}: a sample submission must start with a row_id column, got {columns[:3]}")
    unknown = [c for c in columns[1:] if c not in set(classes)]
    if unknown:
        raise ValueError(f"{path} has {len(unknown)} classes the models do not know: {unknown[:5]}")
    return columns, row_ids


def file_row_ids(path: str | Path, cfg, fallback_seconds: float) -> list[str]:
    """The row ids a file should have: from its header's duration when readable, else ``fallback_seconds``."""
    try:
        duration = sf.info(str(path)).duration
    except Exception:  # unreadable header: assume the competition's file length
        duration = fallback_seconds
    return [window_row_id(Path(path).stem, s, cfg) for s in soundscape_starts(duration, cfg)]


def assemble_rows(
    predicted: dict[str, np.ndarray], sample_rows: Sequence[str], expected: dict[str, list[str]], prior: np.ndarray
) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """Row ids (the sample's order, then other predicted rows, then rows of set-aside files), values, filled rows.

    ``predicted``: row id -> scores in the columns' order. Every row without a prediction
    gets ``prior``; the third result counts those rows per file (the row id's stem).
    """
    row_ids = list(dict.fromkeys([*sample_rows, *predicted, *(r for rows in expected.values() for r in rows)]))
    values = np.empty((len(row_ids), len(prior)), dtype=np.float64)
    filled: dict[str, int] = {}
    for k, row_id in enumerate(row_ids):
        scores = predicted.get(row_id)
        if scores is None:
            values[k] = prior
            stem = row_id.rsplit("_", 1)[0]
            filled[stem] = filled.get(stem, 0) + 1
        else:
            values[k] = scores
    return row_ids, values, filled


# --- The bundle and the pipeline --------------------------------------------------------


@dataclass
class Member:
    """One ensemble member: what it takes ("mels" or "embeddings"), its runner and its blend weight."""

    name: str
    input: str
    predict: Callable[[np.ndarray], np.ndarray]
    weight: float


@dataclass
class Bundle:
    """``bundle.json`` and the folder it lies in."""

    folder: Path
    spec: dict
    chunks: _Window = field(init=False)

    def __post_init__(self) -> None:
        version = self.spec.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{self.folder}/bundle.json has format version {version}; this script reads {FORMAT_VERSION}"
            )
        self.chunks = _Window(self.spec["chunks"]["chunk_s"], self.spec["chunks"]["context_s"])

    @classmethod
    def load(cls, folder: str | Path) -> Bundle:
        folder = Path(folder)
        return cls(folder, json.loads((folder / "bundle.json").read_text()))

    @property
    def classes(self) -> list[str]:
        return list(self.spec["classes"])

    def members(self, threads: int) -> list[Member]:
        batch = int(self.spec["batch_size"])
        out = []
        for m in self.spec["members"]:
            compiled = compile_ir(self.folder / m["ir"], threads, m["precision"])
            out.append(Member(m["name"], m["input"], lambda x, c=compiled: predict_ir(c, x, batch), m["weight"]))
        return out

    def embedder(self, threads: int) -> Callable | None:
        """(mono audio, its rate, window starts) -> BirdNET embeddings, or None when no member takes them."""
        if not any(m["input"] == "embeddings" for m in self.spec["members"]):
            return None
        cfg = self.spec["embeddings"]
        pool = InterpreterPool(lambda: BirdNetInterpreter(self.folder / cfg["birdnet_model"]), threads)

        def embed(mono: np.ndarray, sr: int, starts: list[float]) -> np.ndarray:
            return embed_audio(resample_to_48k(mono, sr), starts, cfg["segment_starts"], self.chunks.chunk_s, pool)[0]

        return embed


@dataclass
class Decoded:
    """One file's windows: starts, log-mels, BirdNET embeddings (or None) and duration; or why it was set aside."""

    path: Path
    starts: list[float] = field(default_factory=list)
    mels: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    duration: float = 0.0
    reason: str | None = None


def decode(path: Path, sample_rate: int, chunks, frontend: Callable, embed: Callable | None) -> Decoded:
    """A file decoded once, cut into windows, through the mel frontend (and BirdNET); or the reason it cannot be."""
    try:
        mono, sr = read_mono(path)
        if not np.isfinite(mono).all():
            return Decoded(path, reason="audio holds NaN or infinite samples")
        starts, windows, duration = cut_windows(to_rate(mono, sr, sample_rate), sample_rate, chunks)
        if not starts:
            return Decoded(path, reason=f"too short for one window ({duration:.2f} s)")
        embeddings = embed(mono, sr, starts) if embed is not None else None
        return Decoded(path, starts, frontend(windows), embeddings, duration)
    except Exception as err:  # any decoder failure is this file's problem, not the run's
        return Decoded(path, reason=f"cannot decode: {type(err).__name__}: {err}")


@dataclass
class Predicted:
    """Every predicted window (row id, file id) with each member's probabilities, and the set-aside files."""

    row_ids: list[str]
    file_ids: list[str]
    probs: list[np.ndarray]
    rejected: list[dict]
    audio_s: float
    wall_s: float


def predict_files(
    paths: Sequence[Path],
    members: Sequence[Member],
    sample_rate: int,
    chunks,
    frontend: Callable,
    embed: Callable | None = None,
    threads: int = 1,
    files_per_step: int = 4,
    deadline: float | None = None,
) -> Predicted:
    """Every readable file's windows through every member.

    Decoding threads decode, cut and compute the mels (libsndfile, resampling, the FFT
    and BLAS release the GIL), and BirdNET's embeddings when ``embed`` is given; one
    more thread runs the members on a few files at a time while the next are decoded.
    A file that cannot be decoded is set aside with its reason; the run goes on.
    ``deadline`` (a ``time.perf_counter()`` value): no file is started once the time per
    file so far says it would not end before it; those files are set aside, and
    their rows get the class prior.
    """
    if embed is None and any(m.input == "embeddings" for m in members):
        raise ValueError("a member takes BirdNET embeddings, but no embed function was given")
    row_ids: list[str] = []
    file_ids: list[str] = []
    steps: list[Future] = []
    rejected: list[dict] = []
    pending: list[Decoded] = []
    audio_s, t0 = 0.0, time.perf_counter()

    def run_members(batch: list[Decoded]) -> list[np.ndarray]:
        inputs = {"mels": np.concatenate([d.mels for d in batch])[:, None]}
        if embed is not None:
            inputs["embeddings"] = np.concatenate([d.embeddings for d in batch])
        return [np.asarray(m.predict(inputs[m.input]), dtype=np.float32) for m in members]

    def over_time(done: int, in_flight: int) -> bool:
        if deadline is None:
            return False
        per_file = (time.perf_counter() - t0) / done if done else 0.0
        return time.perf_counter() + per_file * (in_flight + 1) > deadline

    with ThreadPoolExecutor(max(1, threads)) as decoders, ThreadPoolExecutor(1) as models:
        work: list[Future] = []
        todo = list(paths)
        started = 0
        done = 0
        while done < len(todo):
            while started < len(todo) and len(work) < 2 * max(1, threads):
                if over_time(done, len(work)):
                    for path in todo[started:]:
                        reason = "not predicted: the time budget would have been exceeded"
                        rejected.append({"file": path.name, "path": str(path), "reason": reason})
                    log.warning("time budget: %d files not started get the class prior", len(todo) - started)
                    todo = todo[:started]
                    break
                work.append(decoders.submit(decode, todo[started], sample_rate, chunks, frontend, embed))
                started += 1
            if not work:
                break
            d = work.pop(0).result()
            done += 1
            if d.reason is not None:
                log.warning("%s: %s; its rows get the class prior", d.path.name, d.reason)
                rejected.append({"file": d.path.name, "path": str(d.path), "reason": d.reason})
            else:
                row_ids += [window_row_id(d.path.stem, s, chunks) for s in d.starts]
                file_ids += [d.path.stem] * len(d.starts)
                pending.append(d)
                audio_s += d.duration
            if pending and (len(pending) >= files_per_step or done == len(todo)):
                steps.append(models.submit(run_members, list(pending)))
                pending.clear()
            if done % PROGRESS_EVERY == 0 or done == len(todo):
                wall = time.perf_counter() - t0
                log.info("%d/%d files, %.0f s of audio, %.0fx real time", done, len(paths), audio_s, audio_s / wall)
        results = [step.result() for step in steps]
    n_classes = 0
    probs = [
        np.concatenate([r[k] for r in results]) if results else np.zeros((0, n_classes)) for k in range(len(members))
    ]
    return Predicted(row_ids, file_ids, probs, rejected, audio_s, time.perf_counter() - t0)


def list_audio(test_dir: str | Path) -> list[Path]:
    """Every file under a folder, hidden ones left out, sorted (none when it does not exist).

    The workflow lists a test folder the same way (``layout.list_audio_files``), so that
    predict.py and the infer rule see the same files: one that is not audio is set aside
    with its reason and its rows get the prior, rather than being skipped here only.
    """
    folder = Path(test_dir)
    if not folder.is_dir():
        return []
    names = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return [folder / n for n in sorted(n.as_posix() for n in names if not any(q.startswith(".") for q in n.parts))]


class Predictor:
    """A bundle ready to predict: its members compiled, the mel frontend and BirdNET's interpreters made, once."""

    def __init__(self, bundle: Bundle, threads: int = 1) -> None:
        self.bundle, self.threads = bundle, threads
        self.members = bundle.members(threads)
        self.frontend = LogMel(bundle.spec["mel"])
        self.embed = bundle.embedder(threads)
        names = ", ".join(m.name for m in self.members)
        log.info("%d members (%s), %d threads", len(self.members), names, threads)

    def predict(self, files: Sequence[Path], deadline: float | None = None) -> Predicted:
        """Every window of ``files`` through every member (see ``predict_files``)."""
        rate = self.bundle.spec["mel"]["sample_rate"]
        args = (files, self.members, rate, self.bundle.chunks, self.frontend, self.embed, self.threads)
        return predict_files(*args, deadline=deadline)

    def scores(self, p: Predicted) -> np.ndarray:
        """The members blended with their weights and post-processed file by file: windows x classes."""
        if len(set(p.row_ids)) != len(p.row_ids):
            raise ValueError("two windows share a row id: two test files with the same name?")
        space = self.bundle.spec["blend"]["space"]
        scores = blend(p.probs, [m.weight for m in self.members], space)
        return postprocess(scores, p.file_ids, self.bundle.spec["postprocess"])


def run(
    bundle_dir: str | Path,
    files: Sequence[str | Path],
    sample_submission: str | Path | None,
    out: str | Path,
    threads: int = 1,
    time_budget: float | None = None,
    rejected_out: str | Path | None = None,
    start: float | None = None,
    predictor: Predictor | None = None,
) -> dict:
    """``files`` through the bundle into ``out``: the sample submission's columns and row order, every row filled.

    Rows without a prediction (unreadable files, files the sample lists but that are
    absent, files not reached within ``time_budget`` seconds of ``start``) get the class
    prior, each with a line on stderr. ``rejected_out``: those files and rows as a CSV
    (file, reason, rows_filled). ``predictor``: one made before (the bundle loaded and
    compiled), else one is made when there are files. Returns a summary: files, rows,
    rows filled, audio seconds, wall seconds and the real-time factor of the prediction.
    """
    start = time.perf_counter() if start is None else start
    bundle = predictor.bundle if predictor is not None else Bundle.load(bundle_dir)
    classes = bundle.classes
    columns, sample_rows = read_sample(sample_submission, classes)
    index = [classes.index(c) for c in columns[1:]]
    prior = np.asarray(bundle.spec["prior"], dtype=np.float64)[index]
    files = [Path(f) for f in files]
    predicted: dict[str, np.ndarray] = {}
    rejected: list[dict] = []
    audio_s, wall_s = 0.0, 0.0
    if files:
        predictor = predictor or Predictor(bundle, threads)
        log.info("%d test files", len(files))
        p = predictor.predict(files, None if time_budget is None else start + float(time_budget))
        rejected, audio_s, wall_s = p.rejected, p.audio_s, p.wall_s
        if p.row_ids:
            predicted = dict(zip(p.row_ids, predictor.scores(p)[:, index], strict=True))
    else:
        log.warning("no test soundscapes: every row of the sample submission gets the class prior")
    listed = {r.rsplit("_", 1)[0] for r in sample_rows}
    fallback = float(bundle.spec["fallback_seconds"])
    expected = {
        Path(r["file"]).stem: file_row_ids(r["path"], bundle.chunks, fallback)
        for r in rejected
        if Path(r["file"]).stem not in listed
    }
    row_ids, values, filled = assemble_rows(predicted, sample_rows, expected, prior)
    write_table(out, columns, ([r, *v.tolist()] for r, v in zip(row_ids, values, strict=True)))
    by_stem = {Path(r["file"]).stem: r for r in rejected}
    no_audio = "in the sample submission but no audio for it"
    table = [
        (by_stem[stem]["file"] if stem in by_stem else stem, by_stem.get(stem, {}).get("reason", no_audio), n)
        for stem, n in filled.items()
    ]
    for file, reason, n in table:
        print(f"predict.py: {file}: {reason}; {n} rows get the class prior", file=sys.stderr)
    if rejected_out is not None:
        write_table(rejected_out, ["file", "reason", "rows_filled"], table)
    summary = {
        "files": len(files),
        "files_predicted": len(files) - len(rejected),
        "rows": len(row_ids),
        "rows_filled": int(sum(filled.values())),
        "audio_s": round(audio_s, 3),
        "wall_s": round(time.perf_counter() - start, 3),
        "real_time_factor": round(audio_s / wall_s, 1) if wall_s > 0 else None,
    }
    log.info(
        "wrote %d rows (%d filled with the class prior) to %s; %.0f s of audio at %sx real time",
        summary["rows"],
        summary["rows_filled"],
        out,
        audio_s,
        summary["real_time_factor"],
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-dir", required=True, help="folder of test soundscapes (.ogg)")
    parser.add_argument(
        "--sample-submission",
        help="columns and row order of the submission (default: <test-dir>/../sample_submission.csv if it exists)",
    )
    parser.add_argument("--out", default="submission.csv", help="where submission.csv is written")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="decoding threads and OpenVINO threads"
    )
    parser.add_argument("--time-budget", type=float, help="seconds; files not reached in time get the class prior")
    parser.add_argument("--rejected", help="also write the prior-filled files and rows as a CSV here")
    parser.add_argument("--bundle", default=str(Path(__file__).resolve().parent), help="the bundle folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    sample = args.sample_submission
    if sample is None:
        default = Path(args.test_dir).parent / "sample_submission.csv"
        sample = default if default.is_file() else None
    run(args.bundle, list_audio(args.test_dir), sample, args.out, args.threads, args.time_budget, args.rejected, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
