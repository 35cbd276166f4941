"""The one mel frontend: training chunks, pseudo-label windows and inference all go through here.

A model must never see a different frontend at inference than in training, so
there is one config (``MelConfig``, the ``mel:`` section of config.yaml), one
hash of it (stored with every cached shard, checked by every reader), and one
function that turns audio into log-mels (``MelFrontend.__call__``).

Defaults are the BirdCLEF 2024 winner's: 32 kHz, n_fft 1024, hop 500, 128 mels,
40 Hz - 15 kHz, power 2, dB with an 80 dB range, each chunk scaled to 0..1.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

from birdclef.settings import MelConfig


class MelFrontend:
    """Audio windows (batch, samples) at ``cfg.sample_rate`` -> log-mels (batch, n_mels, frames), float32.

    Keep one per job: building the filterbank and the first call are the slow part.
    Each window is computed and normalised on its own, so a window's mel does not
    depend on the batch it came in.
    """

    def __init__(self, cfg: MelConfig, device: str | torch.device = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            n_mels=cfg.n_mels,
            power=cfg.power,
        ).to(self.device)
        stype = "power" if cfg.power == 2.0 else "magnitude"
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype=stype, top_db=cfg.top_db).to(self.device)

    @torch.inference_mode()
    def __call__(self, windows: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(windows, dtype=torch.float32, device=self.device)
        if x.ndim == 1:
            x = x[None]
        # (batch, 1, mels, frames): AmplitudeToDB clips top_db per leading item, so the
        # channel axis keeps each window's range its own (with (batch, mels, frames)
        # it would clip against the loudest window of the batch).
        spec = self.to_db(self.mel(x)[:, None])[:, 0]
        if self.cfg.normalization == "minmax":
            lo = spec.amin(dim=(1, 2), keepdim=True)
            hi = spec.amax(dim=(1, 2), keepdim=True)
            spec = (spec - lo) / (hi - lo).clamp_min(1e-6)
        elif self.cfg.normalization == "standard":
            mean = spec.mean(dim=(1, 2), keepdim=True)
            std = spec.std(dim=(1, 2), keepdim=True)
            spec = (spec - mean) / std.clamp_min(1e-6)
        return spec

    def numpy16(self, windows: np.ndarray | torch.Tensor) -> np.ndarray:
        """Log-mels as float16 on the CPU: what the cache stores."""
        return self(windows).to("cpu", torch.float16).numpy()
