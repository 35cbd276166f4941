import dataclasses

import numpy as np
import pytest

from birdclef import synth

SR = 32_000


def spectral_centroid(x: np.ndarray) -> float:
    mag = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return float((mag * freqs).sum() / mag.sum())


@pytest.mark.parametrize("kind", synth.CALL_KINDS)
def test_each_call_kind_sounds_in_its_band(kind):
    rng = np.random.default_rng(0)
    call = synth.random_call_type(rng, kind, SR)
    x = synth.syllable(rng, call, SR)
    assert x.dtype == np.float32 and np.isfinite(x).all() and np.abs(x).max() > 0
    if kind == "harmonic":  # energy spreads over the harmonics of f0
        assert call.f_lo * 0.9 < spectral_centroid(x) < call.f_hi * len(call.harmonics)
    else:
        assert call.f_lo * 0.8 < spectral_centroid(x) < call.f_hi * 1.3


def test_pitch_factor_moves_the_call():
    call = synth.random_call_type(np.random.default_rng(1), "upsweep", SR)
    call = dataclasses.replace(call, harmonics=(1.0,))  # a higher pitch may drop a harmonic
    low = synth.syllable(np.random.default_rng(2), call, SR, pitch=0.9)
    high = synth.syllable(np.random.default_rng(2), call, SR, pitch=1.1)
    assert spectral_centroid(high) > spectral_centroid(low) * 1.1


def test_bout_reports_where_its_syllables_are():
    rng = np.random.default_rng(3)
    call = synth.random_call_type(rng, "chevron", SR)
    audio, events = synth.bout(rng, call, 6.0, SR)
    assert len(audio) == 6 * SR and events
    inside = np.zeros(len(audio), bool)
    for a, b in events:
        assert 0 <= a < b <= 6.0
        inside[int(a * SR) : int(b * SR)] = True
    assert np.abs(audio[~inside]).max() == 0  # silence between syllables
    assert np.abs(audio[inside]).max() > 0


def test_same_seed_same_audio():
    make = lambda: synth.background(np.random.default_rng(5), SR, SR)  # noqa: E731
    np.testing.assert_array_equal(make(), make())


def test_colored_noise_slopes_down():
    x = synth.colored_noise(np.random.default_rng(0), 4 * SR, 2.0)
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    low = spec[(freqs > 50) & (freqs < 200)].mean()
    high = spec[(freqs > 5000) & (freqs < 10000)].mean()
    assert low > 100 * high


def test_call_type_rejects_nonsense():
    with pytest.raises(ValueError, match="unknown call kind"):
        synth.CallType("whistle", 1000, 2000, 0.1, 0.1, 2, 1.0)
    with pytest.raises(ValueError, match="f_lo < f_hi"):
        synth.CallType("upsweep", 3000, 2000, 0.1, 0.1, 2, 1.0)
