import numpy as np
import pandas as pd
import pytest
import torch

from birdclef.dataset import MelShardDataset
from birdclef.distill import (
    DistilledChunks,
    PseudoWindows,
    SoundscapeMixup,
    SoundscapeWindows,
    mixup_pairs,
    soften,
    teacher_soft_targets,
)
from birdclef.folds import soundscape_fold
from birdclef.settings import DistillConfig, SoundscapeMixupConfig

from conftest import SHARD_CLASSES as CLASSES
from conftest import SHARD_MEL as MEL


def test_soften_keeps_one_half_and_pulls_towards_it():
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    assert soften(p, 1.0) == pytest.approx(np.clip(p, 1e-6, 1 - 1e-6))
    t2 = soften(p, 2.0)
    assert t2[2] == pytest.approx(0.5) and 0.1 < t2[1] < 0.5 < t2[3] < 0.9
    assert t2[3] == pytest.approx(1 / (1 + np.sqrt(1 / 9)))  # sigmoid(log(9) / 2) = 3 / 4


def test_bad_distill_config_names_the_key():
    with pytest.raises(ValueError, match="pseudo_share"):
        DistillConfig(pseudo_share=1.0)
    with pytest.raises(ValueError, match="unknown distill keys"):
        DistillConfig.from_dict({"weight": 0.5})


def test_pseudo_windows_serve_the_kept_windows_with_their_soft_labels(soundscape_shard):
    ds = MelShardDataset([soundscape_shard], MEL)
    rows = ds.rows[["row_id"]].copy()
    rng = np.random.default_rng(0)
    labels = rows.assign(keep=rng.random(len(rows)) < 0.5, **{c: rng.random(len(rows)) for c in CLASSES})
    pseudo = PseudoWindows(ds, labels.iloc[::-1])  # order does not matter, row ids do
    kept = labels[labels["keep"]]
    assert len(pseudo) == len(kept)
    for i in range(len(pseudo)):
        mel, target, weight = pseudo[i]
        row = kept[kept["row_id"] == ds.rows["row_id"].iat[pseudo.rows[i]]].iloc[0]
        np.testing.assert_allclose(target.numpy(), row[CLASSES].to_numpy(np.float32))
        torch.testing.assert_close(mel, torch.from_numpy(ds.mel(int(pseudo.rows[i])).astype(np.float32))[None])
        assert weight == 1.0


def test_distilled_targets_mix_hard_and_soft_only_where_a_teacher_spoke(soundscape_shard):
    ds = MelShardDataset([soundscape_shard], MEL)  # unlabelled windows: hard targets all 0
    soft = ds.rows[["id", "offset_s"]].iloc[:2].assign(a=0.8, b=0.2, c=0.5)
    chunks = DistilledChunks(ds, soft, DistillConfig(distill_weight=0.25, temperature=1.0))
    np.testing.assert_allclose(chunks[0][1].numpy(), [0.2, 0.05, 0.125], rtol=1e-5)
    np.testing.assert_allclose(chunks[2][1].numpy(), [0, 0, 0])
    assert chunks.has_soft.tolist() == [True, True] + [False] * (len(ds) - 2)


def test_teacher_soft_targets_blend_each_chunk_by_teacher_weight():
    def oof(ids, a):
        return pd.DataFrame({"id": ids, "offset_s": [0.0] * len(ids), "primary_label": "a", "a": a, "b": 0.0})

    soft = teacher_soft_targets(
        {"t1": [oof(["x"], [0.2]), oof(["y"], [0.4])], "t2": [oof(["y", "x"], [1.0, 0.6])]}, {"t2": 3.0}
    )
    assert soft["id"].tolist() == ["x", "y"] and list(soft.columns) == ["id", "offset_s", "a", "b"]
    assert soft["a"].tolist() == pytest.approx([(0.2 + 3 * 0.6) / 4, (0.4 + 3 * 1.0) / 4])


class Samples(torch.utils.data.Dataset):
    """Fixed samples (x, y, w[, e]) for the MixUp tests."""

    def __init__(self, *columns):
        self.columns = columns

    def __len__(self):
        return len(self.columns[0])

    def __getitem__(self, i):
        return tuple(c[i] for c in self.columns)


@pytest.mark.parametrize("rule", ["mix", "max"])
def test_soundscape_mixup_blends_a_chunk_with_a_window_to_the_documented_target(rule):
    chunks = Samples(
        torch.ones(2, 1, 2, 3),
        torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]),
        torch.tensor([0.5, 1.0]),
        torch.tensor([[1.0, 0.0], [float("nan"), 0.0]]),
    )
    windows = Samples(
        torch.zeros(1, 1, 2, 3), torch.tensor([[0.2, 0.6, 0.9]]), torch.tensor([1.0]), torch.tensor([[0.0, 1.0]])
    )
    mixed = SoundscapeMixup(chunks, windows, [(0, 0, 0.75), (1, -1, 1.0)], rule)
    x, y, w, e = mixed[0]
    torch.testing.assert_close(x, torch.full((1, 2, 3), 0.75))  # 0.75 * chunk + 0.25 * window
    expected = [0.8, 0.15, 0.6] if rule == "mix" else [1.0, 0.6, 0.9]  # mix: 0.75 * y + 0.25 * y2; max: the larger
    torch.testing.assert_close(y, torch.tensor(expected))
    assert w == 0.5  # the chunk's weight, not the window's
    torch.testing.assert_close(e, torch.tensor([0.75, 0.25]))  # the same blend of the two embeddings
    x, y, w, e = mixed[1]  # not chosen: the chunk as it is
    torch.testing.assert_close(y, torch.tensor([0.0, 1.0, 0.0]))
    assert torch.isnan(e[0])


def test_mixup_pairs_blend_only_labelled_samples_with_probability_p():
    g = torch.Generator().manual_seed(0)
    picks = list(range(20))  # 0..9 labelled chunks, 10..19 windows drawn by the old sampling
    none = mixup_pairs(picks, 10, 5, SoundscapeMixupConfig(p=0.0), g)
    assert none == [(i, -1, 1.0) for i in picks]
    every = mixup_pairs(picks, 10, 5, SoundscapeMixupConfig(p=1.0, alpha=2.0), g)
    assert [i for i, _, _ in every] == picks
    assert all(0 <= j < 5 and 0 < lam < 1 for _, j, lam in every[:10])
    assert all(j == -1 for _, j, _ in every[10:])
    half = mixup_pairs(list(range(2000)), 2000, 5, SoundscapeMixupConfig(p=0.5), g)
    assert 0.45 < np.mean([j >= 0 for _, j, _ in half]) < 0.55
    again = mixup_pairs(picks, 10, 5, SoundscapeMixupConfig(p=1.0, alpha=2.0), torch.Generator().manual_seed(0))
    assert again == mixup_pairs(picks, 10, 5, SoundscapeMixupConfig(p=1.0, alpha=2.0), torch.Generator().manual_seed(0))


def test_every_window_outside_the_fold_is_eligible_with_floored_soft_labels(soundscape_shard):
    ds = MelShardDataset([soundscape_shard], MEL)
    folds = soundscape_fold(ds.rows["id"], 2)
    assert set(folds) == {0, 1}, "the tiny demo's two soundscapes should fall in both folds"
    labels = ds.rows[["row_id"]].assign(keep=False, **{c: 0.04 for c in CLASSES}).assign(a=0.3)
    labels.loc[labels.index[0], "keep"] = True
    pool = PseudoWindows(ds, labels, folds != 0, kept_only=False, floor=0.05)
    assert len(pool) == (folds != 0).sum() and (folds[pool.rows] == 1).all()  # kept or not, but none of fold 0
    np.testing.assert_allclose(pool.targets, np.tile([0.3, 0.0, 0.0], (len(pool), 1)))  # 0.04 < floor: zeroed
    windows = SoundscapeWindows(ds, labels, folds != 1, floor=0.05)
    assert (folds[windows.rows] == 0).all() and len(windows) == (folds == 0).sum()
