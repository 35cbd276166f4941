"""Post-processing of soundscape predictions: use what the neighbouring windows and the whole file say.

A bird that calls in one 5 s window often calls in the next, and a species heard
clearly somewhere in a recording is more likely in its other windows too. Three steps,
in this order, each one switched off by its neutral setting:

1. ``smooth``: each window's probabilities become a weighted mean of the previous
   window, itself and the next (first and last window: itself and its one neighbour).
2. ``power_low_ranked``: per file, the classes outside the top-k by their highest
   probability in the file get ``p ** power``; a power above 1 quiets classes unlikely
   to be in the file at all (as BirdCLEF 2025 solutions did).
3. ``scale_by_file_max``: ``p * ((1 - a) + a * filemax)``, filemax being the class's
   highest probability over the file: a window counts as much as the file is sure.

The steps live in ``bundle_predict`` (the bundle's predict.py), so that the ensemble fit,
the ``infer`` rule and a Kaggle notebook post-process alike; this module gives them the
``postprocess:`` section as a validated ``PostprocessConfig``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from birdclef import bundle_predict
from birdclef.bundle_predict import power_low_ranked, scale_by_file_max, smooth
from birdclef.settings import PostprocessConfig

__all__ = ["postprocess", "power_low_ranked", "scale_by_file_max", "smooth"]


def postprocess(probs: np.ndarray, file_ids: Sequence[str], cfg: PostprocessConfig) -> np.ndarray:
    """Smoothing, then the power on low-ranked classes, then scaling by the file maximum; probabilities in [0, 1]."""
    return bundle_predict.postprocess(probs, file_ids, cfg.to_dict())
