"""A head on BirdNET v2.4's 1024-d embeddings: the model kind ``birdnet_head``.

BirdNET already separates bird (and many other) sounds; a small head on its embedding
learns the user's classes from few clips, including classes BirdNET does not know.
- ``linear``: layer norm, dropout, linear (a logistic regression per class).
- ``mlp``: layer norm, linear to ``hidden``, GELU, dropout, linear.
The layer norm puts the non-negative embeddings on a common scale for the optimiser.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from birdclef.settings import BIRDNET_EMBEDDING_DIM as EMBEDDING_DIM
from birdclef.settings import ModelConfig


class BirdNetHead(nn.Module):
    """(batch, 1024) BirdNET embeddings -> (batch, classes) logits."""

    def __init__(self, cfg: ModelConfig, n_classes: int, drop_path: float = 0.0) -> None:
        """``drop_path`` is taken for the registry's one signature: a head has no residual blocks to skip."""
        super().__init__()
        self.cfg = cfg
        if cfg.head == "linear":
            out = nn.Linear(EMBEDDING_DIM, n_classes)
            layers = [nn.LayerNorm(EMBEDDING_DIM), nn.Dropout(cfg.dropout), out]
        else:
            out = nn.Linear(cfg.hidden, n_classes)
            layers = [
                nn.LayerNorm(EMBEDDING_DIM),
                nn.Linear(EMBEDDING_DIM, cfg.hidden),
                nn.GELU(),
                nn.Dropout(cfg.dropout),
                out,
            ]
        nn.init.constant_(out.bias, -math.log(max(n_classes - 1, 1)))  # start at the prior, as BirdModel does
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
