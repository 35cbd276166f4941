import math

import pytest
import torch
import torch.nn.functional as F

from birdclef.losses import per_sample_loss, weighted_loss

LOGITS = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]])
TARGETS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.5]])


def test_bce_matches_torch():
    expected = F.binary_cross_entropy_with_logits(LOGITS, TARGETS, reduction="none").mean(dim=1)
    torch.testing.assert_close(per_sample_loss(LOGITS, TARGETS, "bce"), expected)


def test_focal_with_gamma_zero_is_bce_and_down_weights_easy_examples():
    torch.testing.assert_close(per_sample_loss(LOGITS, TARGETS, "focal", 0.0), per_sample_loss(LOGITS, TARGETS, "bce"))
    easy = torch.tensor([[6.0, -6.0]])
    t = torch.tensor([[1.0, 0.0]])
    assert per_sample_loss(easy, t, "focal") < 1e-3 * per_sample_loss(easy, t, "bce")


def test_ce_normalises_the_targets():
    loss = per_sample_loss(LOGITS, TARGETS, "ce")
    logp = F.log_softmax(LOGITS, dim=1)
    assert loss[0].item() == pytest.approx(-logp[0, 0].item())
    assert loss[1].item() == pytest.approx(-(2 / 3 * logp[1, 1] + 1 / 3 * logp[1, 2]).item())


def test_weights_and_bad_name():
    w = torch.tensor([1.0, 0.0])
    assert weighted_loss(LOGITS, TARGETS, w).item() == pytest.approx(per_sample_loss(LOGITS, TARGETS)[0].item())
    assert math.isfinite(weighted_loss(LOGITS, TARGETS, torch.zeros(2)).item())
    with pytest.raises(ValueError, match="loss"):
        per_sample_loss(LOGITS, TARGETS, "hinge")
