"""Signal synthesis for the demo dataset: species calls, voices and backgrounds.

Every function takes a NumPy ``Generator`` and returns float32 audio at
``sr`` Hz, so a whole recording is reproducible from one seed. A species'
identity lives in :class:`CallType`; what varies between recordings of the same
species (pitch, tempo, level) is passed in as factors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CALL_KINDS = (
    "upsweep",
    "downsweep",
    "chevron",
    "trill",
    "harmonic",
    "warble",
    "clicks",
    "buzz",
)
"""Syllable families. ``clicks`` and ``buzz`` are insect-like, the rest bird-like."""

INSECT_KINDS = ("clicks", "buzz")


@dataclass(frozen=True)
class CallType:
    """What makes one species' call its own.

    A call is a *phrase* of ``n_syllables`` syllables, ``gap_s`` apart; a bout
    repeats phrases ``phrase_gap_s`` apart.
    """

    kind: str
    f_lo: float  # lowest frequency of the syllable (Hz)
    f_hi: float  # highest frequency (Hz)
    syllable_s: float  # syllable duration (s)
    gap_s: float  # silence between syllables of a phrase (s)
    n_syllables: int  # syllables per phrase
    phrase_gap_s: float  # silence between phrases (s)
    harmonics: tuple[float, ...] = (1.0,)  # relative amplitude of each harmonic
    mod_hz: float = 0.0  # FM rate (trill), click rate (clicks), AM rate (buzz)
    contour: tuple[float, ...] = field(default=())  # warble shape coefficients

    def __post_init__(self) -> None:
        if self.kind not in CALL_KINDS:
            raise ValueError(f"unknown call kind {self.kind!r}; expected one of {CALL_KINDS}")
        if not 0 < self.f_lo < self.f_hi:
            raise ValueError(f"need 0 < f_lo < f_hi, got {self.f_lo}, {self.f_hi}")


def random_call_type(rng: np.random.Generator, kind: str, sr: int) -> CallType:
    """Draw a call type of ``kind`` with parameters typical of that family."""
    nyq = sr / 2
    if kind in ("upsweep", "downsweep", "chevron"):
        f_lo = rng.uniform(1500, 5000)
        f_hi = min(f_lo * rng.uniform(1.4, 2.5), 0.45 * nyq)
        return CallType(
            kind,
            f_lo,
            f_hi,
            syllable_s=rng.uniform(0.06, 0.25),
            gap_s=rng.uniform(0.04, 0.2),
            n_syllables=int(rng.integers(2, 7)),
            phrase_gap_s=rng.uniform(0.6, 2.0),
            harmonics=(1.0, float(rng.uniform(0.1, 0.5))),
        )
    if kind == "trill":
        fc = rng.uniform(2500, 6500)
        bw = rng.uniform(300, 1500)
        return CallType(
            kind,
            fc - bw / 2,
            fc + bw / 2,
            syllable_s=rng.uniform(0.3, 1.0),
            gap_s=rng.uniform(0.1, 0.3),
            n_syllables=int(rng.integers(1, 4)),
            phrase_gap_s=rng.uniform(0.8, 2.5),
            mod_hz=rng.uniform(15, 45),
        )
    if kind == "harmonic":
        f0 = rng.uniform(400, 1400)
        n_harm = int(rng.integers(3, 7))
        return CallType(
            kind,
            f0,
            f0 * 1.15,
            syllable_s=rng.uniform(0.15, 0.5),
            gap_s=rng.uniform(0.1, 0.4),
            n_syllables=int(rng.integers(1, 5)),
            phrase_gap_s=rng.uniform(0.8, 2.5),
            harmonics=tuple(float(0.8**h) for h in range(n_harm)),
        )
    if kind == "warble":
        f_lo = rng.uniform(1800, 4000)
        return CallType(
            kind,
            f_lo,
            f_lo * rng.uniform(1.5, 2.2),
            syllable_s=rng.uniform(0.4, 1.2),
            gap_s=rng.uniform(0.1, 0.3),
            n_syllables=int(rng.integers(1, 3)),
            phrase_gap_s=rng.uniform(0.6, 2.0),
            harmonics=(1.0, 0.3),
            contour=tuple(float(c) for c in rng.uniform(-1, 1, size=4)),
        )
    if kind == "clicks":
        f_lo = rng.uniform(3500, 7000)
        return CallType(
            kind,
            f_lo,
            min(f_lo + rng.uniform(1500, 4000), 0.9 * nyq),
            syllable_s=rng.uniform(0.15, 0.6),
            gap_s=rng.uniform(0.1, 0.5),
            n_syllables=int(rng.integers(2, 6)),
            phrase_gap_s=rng.uniform(0.3, 1.5),
            mod_hz=rng.uniform(20, 90),
        )
    if kind == "buzz":
        f_lo = rng.uniform(5000, 9000)
        return CallType(
            kind,
            f_lo,
            min(f_lo + rng.uniform(1000, 3000), 0.9 * nyq),
            syllable_s=rng.uniform(0.5, 2.0),
            gap_s=rng.uniform(0.2, 0.8),
            n_syllables=int(rng.integers(1, 3)),
            phrase_gap_s=rng.uniform(0.5, 2.0),
            mod_hz=rng.uniform(80, 300),
        )
    raise ValueError(f"unknown call kind {kind!r}")


def _envelope(n: int, attack: float = 0.15, release: float = 0.3) -> np.ndarray:
    """A syllable envelope: raised-cosine attack and release, flat in between."""
    env = np.ones(n, dtype=np.float64)
    a = max(1, int(n * attack))
    r = max(1, int(n * release))
    env[:a] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, a))
    env[-r:] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, r))
    return env


def bandpass_noise(rng: np.random.Generator, n: int, f_lo: float, f_hi: float, sr: int) -> np.ndarray:
    """White noise band-limited to [f_lo, f_hi] by masking its spectrum."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec[(freqs < f_lo) | (freqs > f_hi)] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.std(out) + 1e-12)


def syllable(
    rng: np.random.Generator,
    call: CallType,
    sr: int,
    pitch: float = 1.0,
    tempo: float = 1.0,
) -> np.ndarray:
    """One syllable of ``call``; ``pitch`` scales frequencies, ``tempo`` speeds it up."""
    dur = call.syllable_s / tempo * rng.uniform(0.9, 1.1)
    n = max(16, int(dur * sr))
    t = np.arange(n) / sr
    u = t / dur  # 0..1 across the syllable
    f_lo, f_hi = call.f_lo * pitch, call.f_hi * pitch
    nyq = sr / 2
    if call.kind in ("clicks", "buzz"):
        hi = min(f_hi, 0.95 * nyq)
        carrier = bandpass_noise(rng, n, f_lo, hi, sr)
        if call.kind == "clicks":
            period = max(1, int(sr / (call.mod_hz * tempo)))
            click_len = max(8, int(0.002 * sr))
            gate = np.zeros(n)
            for start in range(0, n - click_len, period):
                gate[start : start + click_len] = np.exp(-np.arange(click_len) / (click_len / 4))
        else:
            gate = 0.5 + 0.5 * np.sin(2 * np.pi * call.mod_hz * t) ** 2
        return (carrier * gate * _envelope(n, 0.05, 0.1)).astype(np.float32)
    if call.kind == "upsweep":
        freq = f_lo * (f_hi / f_lo) ** u
    elif call.kind == "downsweep":
        freq = f_hi * (f_lo / f_hi) ** u
    elif call.kind == "chevron":
        freq = f_lo + (f_hi - f_lo) * np.sin(np.pi * u)
    elif call.kind == "trill":
        fc, bw = (f_lo + f_hi) / 2, (f_hi - f_lo)
        freq = fc + bw / 2 * np.sin(2 * np.pi * call.mod_hz * tempo * t)
    elif call.kind == "harmonic":
        freq = f_lo + (f_hi - f_lo) * (0.5 - 0.5 * np.cos(2 * np.pi * u))
    else:  # warble: a fixed smooth shape per species
        shape = sum(c * np.sin((k + 1) * np.pi * u) for k, c in enumerate(call.contour))
        shape = (shape - shape.min()) / (np.ptp(shape) + 1e-9)
        freq = f_lo + (f_hi - f_lo) * shape
    phase = 2 * np.pi * np.cumsum(freq) / sr
    out = np.zeros(n)
    for h, amp in enumerate(call.harmonics, start=1):
        if f_hi * h < 0.95 * nyq:
            out += amp * np.sin(h * phase)
    return (out * _envelope(n)).astype(np.float32)


def bout(
    rng: np.random.Generator,
    call: CallType,
    seconds: float,
    sr: int,
    pitch: float = 1.0,
    tempo: float = 1.0,
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Phrases of ``call`` filling about ``seconds``.

    Returns the audio and the (start, end) seconds of every syllable, which is
    what decides the ground truth of a soundscape window.
    """
    n_total = max(1, int(seconds * sr))
    out = np.zeros(n_total, dtype=np.float32)
    events: list[tuple[float, float]] = []
    pos = int(rng.uniform(0, 0.3) * sr)
    while pos < n_total:
        for _ in range(call.n_syllables):
            syl = syllable(rng, call, sr, pitch, tempo)
            end = min(n_total, pos + len(syl))
            if end <= pos:
                break
            out[pos:end] += syl[: end - pos]
            events.append((pos / sr, end / sr))
            pos = end + int(call.gap_s / tempo * rng.uniform(0.8, 1.2) * sr)
        pos += int(call.phrase_gap_s / tempo * rng.uniform(0.7, 1.4) * sr)
    return out, events


def voice(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    """Speech-like sound: a glottal harmonic series shaped by moving formants.

    Stands in for the recordist's voice at the start of many xeno-canto and CSA
    recordings, which a good quality filter should learn to look past.
    """
    n = int(seconds * sr)
    out = np.zeros(n)
    f0 = rng.uniform(95, 230)
    seg = int(rng.uniform(0.12, 0.25) * sr)
    for start in range(0, n, seg):
        m = min(seg, n - start)
        t = np.arange(m) / sr
        formants = (rng.uniform(300, 850), rng.uniform(900, 2300), rng.uniform(2400, 3200))
        f0_seg = f0 * rng.uniform(0.9, 1.1)
        for h in range(1, int(4000 / f0_seg)):
            fh = h * f0_seg
            amp = sum(np.exp(-((fh - fm) ** 2) / (2 * 120.0**2)) for fm in formants)
            if amp > 1e-3:
                out[start : start + m] += amp * np.sin(2 * np.pi * fh * t + rng.uniform(0, 2 * np.pi))
        out[start : start + m] *= _envelope(m, 0.2, 0.2) * rng.uniform(0.3, 1.0)
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum 1/f**exponent (1: pink, 2: brown), unit std."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec = spec / f ** (exponent / 2)
    spec[0] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.std(out) + 1e-12)


def wind(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Low rumble (< 300 Hz) in slow gusts."""
    rumble = bandpass_noise(rng, n, 10, rng.uniform(120, 300), sr)
    t = np.arange(n) / sr
    gust = 1 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t + rng.uniform(0, 2 * np.pi))
    out = rumble * gust
    return out / (np.std(out) + 1e-12)


def rain(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Drops: short broadband ticks at random times."""
    rate = rng.uniform(5, 60)
    n_drops = rng.poisson(rate * n / sr)
    out = np.zeros(n)
    tick_len = int(0.004 * sr)
    tick = np.exp(-np.arange(tick_len) / (tick_len / 5))
    for start in rng.integers(0, max(1, n - tick_len), size=n_drops):
        out[start : start + tick_len] += tick * rng.uniform(0.2, 1.0) * rng.choice((-1, 1))
    out = np.diff(out, prepend=0.0)  # a tick is bright, not a low thump
    return out / (np.std(out) + 1e-12)


def background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A random mix of pink/brown noise, wind and rain, unit std."""
    out = colored_noise(rng, n, rng.choice((1.0, 2.0))) * rng.uniform(0.5, 1.0)
    if rng.random() < 0.5:
        out += wind(rng, n, sr) * rng.uniform(0.3, 1.5)
    if rng.random() < 0.3:
        out += rain(rng, n, sr) * rng.uniform(0.2, 0.8)
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    """Root mean square of the non-silent part of ``x`` (0 for silence)."""
    active = x[np.abs(x) > 1e-6]
    return float(np.sqrt(np.mean(active.astype(np.float64) ** 2))) if active.size else 0.0


def lowpass(x: np.ndarray, cutoff: float, sr: int) -> np.ndarray:
    """Gentle spectral roll-off above ``cutoff``: the air absorbs highs of distant calls."""
    spec = np.fft.rfft(x.astype(np.float64))
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    spec *= 1 / (1 + (freqs / cutoff) ** 4)
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def normalize_peak(x: np.ndarray, peak_db: float) -> np.ndarray:
    """Scale ``x`` so that its peak is at ``peak_db`` dBFS."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0:
        return x.astype(np.float32)
    return (x * (10 ** (peak_db / 20) / peak)).astype(np.float32)
