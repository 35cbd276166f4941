import pickle
from pathlib import Path

import pytest
import timm
import torch

from birdclef.kinds import load_model
from birdclef.layout import by_model
from birdclef.models import BirdModel, save_model
from birdclef.settings import ModelConfig

X = torch.randn(2, 1, 64, 96)


@pytest.mark.parametrize("head", ["linear", "conv1x1", "sed"])
def test_every_head_gives_clip_logits(head):
    model = BirdModel(ModelConfig(backbone="efficientnet_b0", head=head), n_classes=7).eval()
    out = model(X)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert model.backbone.conv_stem.weight.grad is not None


@pytest.mark.parametrize("head", ["linear", "conv1x1", "sed"])
def test_an_untrained_model_starts_near_the_class_prior(head):
    # p = 0.5 for all 20 classes would cost BCE its first epochs; start near 1 in 20 instead
    model = BirdModel(ModelConfig(backbone="mobilenetv3_small_050", head=head, dropout=0.0), n_classes=20).eval()
    with torch.no_grad():
        p = torch.sigmoid(model(torch.rand(8, 1, 64, 96)))
    assert 0.02 < p.mean() < 0.15


def test_any_timm_backbone():
    model = BirdModel(ModelConfig(backbone="regnety_008", head="sed"), n_classes=3).eval()
    assert model(X).shape == (2, 3)


def test_bad_config_names_the_key(tmp_path):
    with pytest.raises(ValueError, match="head"):
        ModelConfig(head="mlp")
    with pytest.raises(ValueError, match="backbone"):
        ModelConfig(backbone="efficientnet_b99")
    with pytest.raises(ValueError, match="pretrained"):
        ModelConfig(pretrained=str(tmp_path / "missing.pth"))


def test_saved_model_loads_with_weights_only_and_predicts_the_same(tmp_path):
    model = BirdModel(ModelConfig(head="sed", dropout=0.3), n_classes=4).eval()
    save_model(tmp_path / "m" / "model.pt", model, ["a", "b", "c", "d"], extra={"epoch": 3, "mel_hash": "abc"})
    loaded, payload = load_model(tmp_path / "m" / "model.pt")
    assert payload["classes"] == ["a", "b", "c", "d"] and payload["epoch"] == 3
    assert payload["model_config"]["dropout"] == 0.3
    torch.testing.assert_close(loaded(X), model(X))


@pytest.mark.parametrize("backbone", ["regnety_002", "mobilenetv3_small_050"])
def test_drop_path_reaches_the_backbone_in_training_only_and_adds_no_weights(backbone):
    from timm.layers import DropPath

    cfg = ModelConfig(backbone=backbone, head="sed", dropout=0.0)  # no other randomness in training
    plain, dropped = BirdModel(cfg, 4), BirdModel(cfg, 4, drop_path=0.2)
    rates = [m.drop_prob for m in dropped.modules() if isinstance(m, DropPath)]
    assert rates and 0 < max(rates) <= 0.2 + 1e-6  # timm spreads the rate over the depth (float32)
    assert not [m for m in plain.modules() if isinstance(m, DropPath)]
    assert plain.state_dict().keys() == dropped.state_dict().keys()  # a checkpoint loads into either
    with torch.no_grad():  # timm zero-initialises each block's last norm: at init a residual branch adds nothing
        for p in plain.parameters():
            p.add_(0.1 * torch.randn_like(p))
    dropped.load_state_dict(plain.state_dict())
    plain.eval(), dropped.eval()
    torch.testing.assert_close(dropped(X), plain(X))  # identity once evaluating
    plain.train(), dropped.train()
    torch.manual_seed(0)  # which blocks a sample skips is random: fixed here
    assert not torch.allclose(dropped(X), plain(X))  # but not in training


class _RunsCodeOnLoad:
    """What a hostile checkpoint carries: unpickling it would call Path.touch."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_on_load_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "model_config": {}, "classes": [], "x": _RunsCodeOnLoad(marker)}, tmp_path / "m.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_model(tmp_path / "m.pt")
    assert not marker.exists()


def test_a_local_pretrained_file_initialises_the_backbone(tmp_path):
    source = timm.create_model("efficientnet_b0", num_classes=10)  # a 3-channel ImageNet-style checkpoint
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    model = BirdModel(ModelConfig(pretrained=str(tmp_path / "weights.pth")), n_classes=5)
    # timm folds the RGB stem into one channel by summing it
    torch.testing.assert_close(model.backbone.conv_stem.weight, source.conv_stem.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.backbone.blocks[3][0].conv_pw.weight, source.blocks[3][0].conv_pw.weight)


def test_model_files_group_by_stage_and_name_in_order():
    paths = [
        f"results/models/{s}/{m}/fold{k}/model.pt" for s in ("teacher", "student") for m in ("a", "b") for k in (0, 1)
    ]
    groups = by_model(paths)
    assert list(groups) == [("teacher", "a"), ("teacher", "b"), ("student", "a"), ("student", "b")]
    assert groups[("student", "b")] == [
        "results/models/student/b/fold0/model.pt",
        "results/models/student/b/fold1/model.pt",
    ]
