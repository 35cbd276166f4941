"""The model kinds: one registry of how each kind is built, fed, augmented and exported.

Training, validation predictions, pseudo-labels, export and inference look a model's
kind up here and never branch on its name. A kind is
- ``cnn``: a timm backbone on log-mels (``birdclef.models.BirdModel``); its input is a
  window's mel, (1, mels, frames); it is quantised to INT8 when the gate allows;
- ``birdnet_head``: a head on BirdNET's embedding of the window
  (``birdclef.birdnet_head.BirdNetHead``); its input is the 1024-d embedding; it stays
  FP32 (a head this small gains nothing from INT8, and BirdNET itself runs on LiteRT).
``settings.KIND_INPUT`` says the same per kind without torch, for the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from birdclef.augment import augment_batch, mix_only
from birdclef.birdnet_head import BirdNetHead
from birdclef.dataset import EmbeddingDataset, MelShardDataset
from birdclef.models import BirdModel
from birdclef.settings import KIND_INPUT, MelConfig, ModelConfig


@dataclass(frozen=True)
class Kind:
    """How one kind of model is built and fed."""

    module: Callable[[ModelConfig, int], nn.Module]
    input: str  # "mels" or "embeddings": the cache it predicts from
    augment: Callable  # (x, y, w, AugmentConfig, generator, extra) -> (x, y, w, extra)
    quantize: bool  # whether export tries NNCF INT8
    why_not_int8: str = ""

    def dataset(
        self,
        mel_paths: Sequence[str | Path],
        mel: MelConfig,
        embedding_paths: Sequence[str | Path] | None = None,
        secondary_target: float = 0.5,
    ) -> MelShardDataset:
        """The windows of ``mel_paths`` (keys and labels) as this kind takes them."""
        if self.input == "mels":
            return MelShardDataset(mel_paths, mel, secondary_target=secondary_target)
        if not embedding_paths:
            raise ValueError("a birdnet_head model needs the BirdNET embedding shards of its windows")
        return EmbeddingDataset(mel_paths, embedding_paths, mel, secondary_target=secondary_target)

    def to_device(self, x: torch.Tensor | nn.Module, device: torch.device) -> torch.Tensor | nn.Module:
        """A batch, or the model itself, on ``device`` in the layout this kind runs fastest in.

        Convolutions in NHWC: 1.13x (RegNetY) to 1.29x (MobileNetV3) the train steps per second on
        2 CPU cores (benchmarks/train_step.py); a flat embedding has no layout to choose.
        """
        if self.input == "mels":
            return x.to(device, memory_format=torch.channels_last)
        return x.to(device)


REGISTRY: dict[str, Kind] = {
    "cnn": Kind(BirdModel, "mels", augment_batch, quantize=True),
    "birdnet_head": Kind(
        BirdNetHead,
        "embeddings",
        mix_only,
        quantize=False,
        why_not_int8=(
            "a head on BirdNET embeddings is a few small matrix products, tens of thousands of windows/s "
            "against the few windows/s of the BirdNET invokes that feed it: INT8 would save nothing "
            "measurable end to end, so FP32 is kept"
        ),
    ),
}
assert {k: v.input for k, v in REGISTRY.items()} == KIND_INPUT  # the rules' view (stdlib) agrees


def kind_of(cfg: ModelConfig) -> Kind:
    return REGISTRY[cfg.kind]


def build_model(cfg: ModelConfig, n_classes: int, drop_path: float = 0.0) -> nn.Module:
    """A fresh model of ``cfg``'s kind; ``drop_path``: stochastic depth in training (train.drop_path)."""
    return kind_of(cfg).module(cfg, n_classes, drop_path=drop_path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The saved model of any kind (in eval mode) and the whole saved payload (classes, model_config, extras)."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    cfg = ModelConfig.from_dict({**payload["model_config"], "pretrained": None})
    model = build_model(cfg, len(payload["classes"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload


def checkpoint_kind(payload: dict) -> Kind:
    """The kind of a loaded checkpoint's model."""
    return REGISTRY[payload["model_config"].get("kind", "cnn")]
