import numpy as np
import pandas as pd
import pytest
import torch

from birdclef.dataset import MelShardDataset
from birdclef.distill import DistilledChunks, PseudoWindows, soften, teacher_soft_targets
from birdclef.settings import DistillConfig

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
