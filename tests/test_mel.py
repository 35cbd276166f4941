import numpy as np
import pytest
import torch

from birdclef.mel import MelFrontend
from birdclef.settings import MelConfig


def windows(n: int = 3, seconds: float = 5.0, sr: int = 32_000) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    out = 0.01 * rng.standard_normal((n, len(t)))
    for k in range(n):
        out[k] += (0.5 / (k + 1) ** 2) * np.sin(2 * np.pi * (2000 + 1000 * k) * t)
    return out.astype(np.float32)


def test_shape_dtype_and_range():
    cfg = MelConfig()
    mel = MelFrontend(cfg)(windows())
    assert mel.shape == (3, 128, cfg.n_frames(160_000)) == (3, 128, 321)
    assert mel.dtype == torch.float32
    assert mel.amin() == 0.0 and mel.amax() == 1.0


def test_a_window_does_not_depend_on_its_batch():
    front = MelFrontend(MelConfig(normalization="none"))
    x = windows()
    batch = front(x)
    for k in range(len(x)):
        torch.testing.assert_close(front(x[k]), batch[k : k + 1])
    # each window keeps its own 80 dB range, not the loudest window's
    assert (batch.amax(dim=(1, 2)) - batch.amin(dim=(1, 2)) <= 80.0 + 1e-3).all()
    assert batch[2].amin() < batch[0].amax() - 80.0


def test_a_tone_lands_in_its_mel_band():
    front = MelFrontend(MelConfig())
    mel = front(windows(1))[0]  # a 2 kHz tone
    fft_bin = round(2000 / (32_000 / 1024))
    expected = int(front.mel.mel_scale.fb[fft_bin].argmax())
    assert abs(int(mel.mean(dim=1).argmax()) - expected) <= 1


def test_hash_is_stable_and_changes_with_any_parameter():
    assert MelConfig().hash == MelConfig().hash
    assert MelConfig().hash != MelConfig(hop_length=512).hash
    assert MelConfig().hash != MelConfig(normalization="standard").hash


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"normalization": "zscore"}, "mel.normalization"), ({"f_max": 20_000.0}, "mel.f_max")],
)
def test_bad_config_names_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        MelConfig(**kwargs)


def test_standard_normalization():
    mel = MelFrontend(MelConfig(normalization="standard"))(windows())
    torch.testing.assert_close(mel.mean(dim=(1, 2)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(mel.std(dim=(1, 2)), torch.ones(3), atol=1e-3, rtol=0)
