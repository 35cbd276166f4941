"""Models: a timm backbone on one-channel log-mels, and a head chosen in config.

Heads (on the backbone's last ``features_only`` feature map, batch x C x F x T):
- ``linear``: global average pool, dropout, linear (timm's stock classifier).
- ``conv1x1``: dropout, a 1x1 convolution to class maps, averaged over frequency,
  then the mean and the max over time averaged (a call can be short).
- ``sed``: frequency-averaged frames, dropout, frame-wise class logits pooled over
  time by learned attention (the SED head of the BirdCLEF winners, after PANNs).

Every head returns clip-level logits (batch x classes). ``model.pt`` holds only
tensors, strings and numbers, and loads with ``torch.load(..., weights_only=True)``
without the training config.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from birdclef.atomic import atomic_path
from birdclef.settings import ModelConfig, is_hub_name


def create_backbone(backbone: str, pretrained: str | None = None, drop_path: float = 0.0) -> nn.Module:
    """timm's ``features_only`` backbone on one channel (its last feature map), from scratch or pretrained.

    ``pretrained`` is a local timm weights file, or an ``hf-hub:<repo>[@<revision>]`` name that
    timm loads through the Hugging Face cache (``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``).
    Either way timm adapts the first convolution to one input channel (an RGB stem is summed).
    ``drop_path``: timm's ``drop_path_rate`` (stochastic depth in training; no weights of its own).
    """
    kwargs: dict[str, Any] = {"in_chans": 1, "features_only": True, "out_indices": (-1,)}
    if drop_path > 0:  # passed only when used: not every timm model takes the argument
        kwargs["drop_path_rate"] = drop_path
    if not is_hub_name(pretrained):
        if pretrained:
            kwargs |= {"pretrained": True, "pretrained_cfg_overlay": {"file": str(pretrained)}}
        return timm.create_model(backbone, **kwargs)
    model = timm.create_model(pretrained, pretrained=True, **kwargs)  # the architecture is the repo's config.json's
    architecture = model.pretrained_cfg.get("architecture", "")
    if architecture.split(".", 1)[0] != backbone.split(".", 1)[0]:
        raise ValueError(f"pretrained: {pretrained} holds {architecture} weights, but backbone is {backbone}")
    return model


class BirdModel(nn.Module):
    """Backbone (``in_chans=1``, ``features_only``) plus head: (batch, 1, mels, frames) -> logits."""

    def __init__(self, cfg: ModelConfig, n_classes: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = create_backbone(cfg.backbone, cfg.pretrained, drop_path)
        channels = self.backbone.feature_info.channels()[-1]
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.head == "linear":
            self.fc = nn.Linear(channels, n_classes)
        elif cfg.head == "conv1x1":
            self.conv = nn.Conv2d(channels, n_classes, kernel_size=1)
        else:
            self.frame = nn.Conv1d(channels, n_classes, kernel_size=1)
            self.attention = nn.Conv1d(channels, n_classes, kernel_size=1)
        # Start at the prior (about one class in n per sample), not at p = 0.5 for every class:
        # from scratch, BCE otherwise spends its first epochs only pushing every output down.
        out = {"linear": "fc", "conv1x1": "conv", "sed": "frame"}[cfg.head]
        nn.init.constant_(getattr(self, out).bias, -math.log(max(n_classes - 1, 1)))

    @property
    def n_features(self) -> int:
        """Channels of the backbone's last feature map: the size of ``forward_pooled``'s second output."""
        return self.backbone.feature_info.channels()[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self.backbone(x)[-1])

    def forward_pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the pooled features (batch x C, mean over frequency and time) of one forward pass.

        Embedding distillation projects the pooled features onto BirdNET's embedding; the
        projection lives in the training loop, so a saved model never holds it.
        """
        features = self.backbone(x)[-1]
        return self._head(features), features.mean(dim=(2, 3))

    def _head(self, features: torch.Tensor) -> torch.Tensor:
        # features: batch x C x F x T
        if self.cfg.head == "linear":
            return self.fc(self.dropout(features.mean(dim=(2, 3))))
        if self.cfg.head == "conv1x1":
            maps = self.conv(self.dropout(features)).mean(dim=2)  # batch x classes x T
            return (maps.mean(dim=2) + maps.amax(dim=2)) / 2
        frames = self.dropout(features.mean(dim=2))  # batch x C x T
        weights = torch.softmax(torch.tanh(self.attention(frames)), dim=2)
        return (weights * self.frame(frames)).sum(dim=2)


def save_model(path: str | Path, model: nn.Module, classes: list[str], extra: dict | None = None) -> None:
    """State dict, model config and class list (plus ``extra`` plain values), loadable with weights_only=True."""
    payload = {"state_dict": model.state_dict(), "model_config": asdict(model.cfg), "classes": list(classes)}
    with atomic_path(path) as tmp:
        torch.save({**payload, **(extra or {})}, tmp)
