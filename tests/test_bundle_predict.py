"""The bundle's predict.py (birdclef/bundle_predict.py): standalone, the training frontend, the submission's rows."""

import ast
import csv
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from birdclef import bundle_predict as bp
from birdclef.bundle import class_prior
from birdclef.dataset import MelShardDataset
from birdclef.mel import MelFrontend
from birdclef.settings import MelConfig

from conftest import REPO
from conftest import SHARD_CHUNKS as CHUNKS
from conftest import SHARD_MEL as MEL

CLASSES = ["a", "b", "c"]
ALLOWED_IMPORTS = {"numpy", "scipy", "soundfile", "openvino", "ai_edge_litert"}


class Recorder:
    """A member that predicts each window's mean level per class, and keeps what it was given."""

    def __init__(self, scale: float = 1.0) -> None:
        self.seen: list[np.ndarray] = []
        self.scale = scale

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(x)
        level = x.reshape(len(x), -1).mean(axis=1)[:, None] * self.scale
        return np.repeat(level, len(CLASSES), axis=1)


def member(fn, input_: str = "mels") -> bp.Member:
    return bp.Member("m", input_, fn, 1.0)


def predict(paths, members, embed=None, **kw) -> bp.Predicted:
    return bp.predict_files(paths, members, MEL.sample_rate, CHUNKS, bp.LogMel(asdict(MEL)), embed, **kw)


def test_predict_py_imports_nothing_of_the_workflow_nor_torch_nor_pandas():
    tree = ast.parse((REPO / "workflow_scripts/birdclef/bundle_predict.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    import sys

    assert imported - set(sys.stdlib_module_names) <= ALLOWED_IMPORTS, imported


@pytest.mark.parametrize(
    "cfg",
    [MelConfig(), MelConfig(normalization="standard", top_db=None), MelConfig(power=1.0, n_fft=2048, hop_length=512)],
    ids=["default", "standard-no-top-db", "magnitude-2048"],
)
def test_the_numpy_frontend_equals_the_training_frontend(cfg):
    rng = np.random.default_rng(0)
    t = np.arange(5 * cfg.sample_rate) / cfg.sample_rate
    noise = 0.01 * rng.standard_normal((2, len(t)))  # recordings have a noise floor; digital silence is -100 dB
    windows = noise + np.stack([0.3 * np.sin(2 * np.pi * 3000 * t) * (t > 2), 0 * t])
    ours = bp.LogMel(asdict(cfg))(windows.astype(np.float32))
    torch_mels = MelFrontend(cfg)(windows).numpy()
    assert ours.shape == torch_mels.shape
    np.testing.assert_allclose(ours, torch_mels, atol=1e-4)


@pytest.mark.real_data
def test_the_numpy_frontend_equals_the_training_frontend_on_real_soundscapes(shared_data):
    paths = sorted((shared_data / "nips4b-birdclef" / "train_soundscapes").glob("*.ogg"))[:3]
    cfg = MelConfig()
    front, ours = MelFrontend(cfg), bp.LogMel(asdict(cfg))
    for path in paths:
        _, windows, _ = bp.cut_windows(bp.to_rate(*bp.read_mono(path), cfg.sample_rate), cfg.sample_rate, CHUNKS)
        np.testing.assert_allclose(ours(windows), front(windows).numpy(), atol=1e-4)


def test_windows_get_the_training_mels_and_kaggle_row_ids(tiny_demo, soundscape_shard):
    """Inference computes the mels the cache holds for the same soundscapes (the one frontend, the one cut)."""
    paths = sorted((tiny_demo / "train_soundscapes").glob("*.ogg"))
    a, b = Recorder(), Recorder(2.0)
    p = predict(paths, [member(a), member(b)], threads=2, files_per_step=1)
    ds = MelShardDataset([soundscape_shard], MEL)
    assert p.row_ids == ds.rows["row_id"].tolist()
    assert p.file_ids == ds.rows["id"].tolist()
    assert p.rejected == []
    mels = np.concatenate(a.seen)
    assert mels.shape == (len(ds), 1, *ds.mel_shape)
    cached = np.stack([ds.mel(i) for i in range(len(ds))]).astype(np.float32)
    np.testing.assert_allclose(mels[:, 0], cached, atol=2e-3)  # the cache stores float16
    assert [q.shape for q in p.probs] == [(len(ds), 3)] * 2
    np.testing.assert_allclose(p.probs[1], 2 * p.probs[0], rtol=1e-6)


def test_a_corrupt_file_is_set_aside_with_its_reason(tiny_demo, tmp_path):
    good = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))[0]
    shutil.copy(good, tmp_path / "good.ogg")
    (tmp_path / "broken.ogg").write_bytes(b"OggS" + bytes(500))
    p = predict(sorted(tmp_path.glob("*.ogg")), [member(Recorder())])
    assert set(p.file_ids) == {"good"}
    assert [r["file"] for r in p.rejected] == ["broken.ogg"]
    assert "cannot decode" in p.rejected[0]["reason"]
    assert len(p.probs[0]) == len(p.row_ids)
    # an unreadable header: the file's rows are guessed from the fallback length
    assert bp.file_row_ids(tmp_path / "broken.ogg", CHUNKS, 15) == ["broken_5", "broken_10", "broken_15"]
    assert bp.file_row_ids(tmp_path / "good.ogg", CHUNKS, 15)[-1] == p.row_ids[-1]


def test_a_deadline_already_past_sets_every_file_aside(tiny_demo):
    import time

    paths = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))
    p = predict(paths, [member(Recorder())], deadline=time.perf_counter() - 1)
    assert p.row_ids == [] and len(p.rejected) == len(paths)
    assert all("time budget" in r["reason"] for r in p.rejected)


def test_rows_follow_the_sample_and_rows_without_predictions_get_the_prior():
    predicted = {"s1_10": np.array([0.9, 0.1, 0.5]), "s1_5": np.array([0.9, 0.2, 0.5]), "s3_5": np.array([0, 0, 0.0])}
    prior = np.array([0.2, 0.5, 0.3])
    rows, values, filled = bp.assemble_rows(predicted, ["s1_5", "s1_10", "s2_5"], {"s4": ["s4_5", "s4_10"]}, prior)
    assert rows == ["s1_5", "s1_10", "s2_5", "s3_5", "s4_5", "s4_10"]
    assert values[0, 1] == 0.2 and values[1, 1] == 0.1  # matched by row id, not by position
    np.testing.assert_allclose(values[2], prior)
    assert filled == {"s2": 1, "s4": 2}


def test_the_sample_submission_must_start_with_row_id_and_know_its_classes(tmp_path):
    (tmp_path / "s.csv").write_text("row_id,c,a\ns_5,0,0\n")
    assert bp.read_sample(tmp_path / "s.csv", CLASSES) == (["row_id", "c", "a"], ["s_5"])
    assert bp.read_sample(None, CLASSES) == (["row_id", *CLASSES], [])
    (tmp_path / "bad.csv").write_text("row_id,a,zz\n")
    with pytest.raises(ValueError, match="zz"):
        bp.read_sample(tmp_path / "bad.csv", CLASSES)
    (tmp_path / "nohead.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="row_id"):
        bp.read_sample(tmp_path / "nohead.csv", CLASSES)


def test_class_prior_is_a_distribution_without_zeros():
    prior = class_prior(["a", "a", "b"], CLASSES)
    assert prior.index.tolist() == CLASSES
    assert prior.sum() == pytest.approx(1.0)
    assert prior["a"] > prior["b"] > prior["c"] > 0


def test_embedding_members_get_the_cached_birdnet_embeddings_from_the_same_decode(tiny_demo, soundscape_shard):
    """A birdnet_head member at inference sees what the embedding cache holds for the same windows."""
    from birdclef import birdnet
    from birdclef.embeddings import build_embedding_shard
    from birdclef.settings import EmbeddingConfig

    paths = sorted((tiny_demo / "train_soundscapes").glob("*.ogg"))
    head = Recorder()
    cfg = EmbeddingConfig()
    members = [member(Recorder()), member(head, "embeddings")]
    with pytest.raises(ValueError, match="no embed function"):
        predict(paths, members)
    pool = bp.InterpreterPool(birdnet.BirdNetEmbedder, 2)

    def embed(mono, sr, starts):
        return bp.embed_audio(bp.resample_to_48k(mono, sr), starts, cfg.segment_starts, CHUNKS.chunk_s, pool)[0]

    p = predict(paths, members, embed, threads=2)
    rows = MelShardDataset([soundscape_shard], MEL).rows
    table, _ = build_embedding_shard(rows, {q.stem: str(q) for q in paths}, {}, cfg, CHUNKS)
    cached = np.stack([np.frombuffer(b, np.float16) for b in table.column("embedding").to_pylist()])
    got = np.concatenate(head.seen)
    assert got.shape == (len(p.row_ids), 1024) and len(p.probs[1]) == len(p.row_ids)
    np.testing.assert_allclose(got, cached.astype(np.float32), atol=5e-3, rtol=5e-3)  # the cache stores float16


# --- run(): a hand-made bundle with a tiny IR ---------------------------------------------


def tiny_bundle(folder: Path) -> Path:
    """A bundle whose one member scores sigmoid(k * mean mel) for class k = 1, 2, 3."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([-1, 1, MEL.n_mels, -1], np.float32, name="mels")
    level = ops.reduce_mean(x, np.array([2, 3]), keep_dims=False)
    y = ops.sigmoid(ops.matmul(level, ops.constant(np.array([[1, 2, 3]], np.float32)), False, False))
    (folder / "members").mkdir(parents=True)
    ov.save_model(ov.Model([y], [x]), folder / "members" / "fp32.xml")
    spec = {
        "format_version": bp.FORMAT_VERSION,
        "classes": CLASSES,
        "prior": [0.5, 0.3, 0.2],
        "mel": asdict(MEL),
        "chunks": {"chunk_s": CHUNKS.chunk_s, "context_s": CHUNKS.context_s},
        "embeddings": None,
        "members": [{"name": "m", "input": "mels", "ir": "members/fp32.xml", "precision": "f32", "weight": 1.0}],
        "blend": {"space": "prob"},
        "postprocess": {
            "smoothing": None,
            "smoothing_edge": [0.9, 0.1],
            "low_rank_power": 1.0,
            "low_rank_top_k": 3,
            "file_max_weight": 0.0,
        },
        "batch_size": 4,
        "fallback_seconds": 15,
    }
    (folder / "bundle.json").write_text(json.dumps(spec))
    return folder


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_run_writes_the_sample_rows_and_fills_the_messy_cases_with_the_prior(tiny_demo, tmp_path):
    bundle = tiny_bundle(tmp_path / "bundle")
    tests = tmp_path / "test"
    tests.mkdir()
    for path in sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))[:2]:
        shutil.copy(path, tests / path.name)
    (tests / "broken.ogg").write_bytes(b"OggS" + bytes(500))
    good = sorted(p for p in tests.glob("*.ogg") if p.name != "broken.ogg")
    rows = [bp.window_row_id(good[0].stem, s, CHUNKS) for s in (0.0, 5.0)] + ["missing_5"]
    (tmp_path / "sample.csv").write_text("row_id,c,a,b\n" + "".join(f"{r},0,0,0\n" for r in rows))

    files = bp.list_audio(tests)
    summary = bp.run(bundle, files, tmp_path / "sample.csv", tmp_path / "sub.csv", 2, None, tmp_path / "rej.csv")
    table = read_csv(tmp_path / "sub.csv")
    assert table[0] == ["row_id", "c", "a", "b"]
    got = [r[0] for r in table[1:]]
    assert got[:3] == rows  # the sample's rows first, in its order
    assert {r.rsplit("_", 1)[0] for r in got[3:]} == {p.stem for p in files}  # then every other window
    missing = table[3]
    assert [float(v) for v in missing[1:]] == [0.2, 0.5, 0.3]  # the prior, in the sample's column order
    first = [float(v) for v in table[1][1:]]
    assert first[0] > first[2] > first[1]  # sigmoid(3m) > sigmoid(2m) > sigmoid(m): columns matched by name
    rejected = {r[0]: r for r in read_csv(tmp_path / "rej.csv")[1:]}
    assert set(rejected) == {"broken.ogg", "missing"}
    assert rejected["broken.ogg"][2] == "3"  # fallback 15 s: three rows
    assert summary["rows_filled"] == 4 and summary["files_predicted"] == 2

    # an empty folder: the sample's rows, every one with the prior; no sample either: a header alone
    bp.run(bundle, [], tmp_path / "sample.csv", tmp_path / "empty.csv")
    assert [r[0] for r in read_csv(tmp_path / "empty.csv")[1:]] == rows
    bp.run(bundle, [], None, tmp_path / "bare.csv")
    assert read_csv(tmp_path / "bare.csv") == [["row_id", *CLASSES]]


def test_the_command_line_finds_the_sample_beside_the_test_folder_and_keeps_a_time_budget(tiny_demo, tmp_path):
    bundle = tiny_bundle(tmp_path / "bundle")
    shutil.copy(bp.__file__, bundle / "predict.py")
    comp = tmp_path / "competition"
    shutil.copytree(tiny_demo / "test_soundscapes", comp / "test_soundscapes")
    (comp / "sample_submission.csv").write_text("row_id,a,b,c\nx_5,0,0,0\n")
    import subprocess
    import sys

    out = tmp_path / "sub.csv"
    args = ["--test-dir", str(comp / "test_soundscapes"), "--out", str(out), "--threads", "1"]
    done = subprocess.run([sys.executable, str(bundle / "predict.py"), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = read_csv(out)
    assert table[1][0] == "x_5" and len(table) > 2
    assert "real time" in done.stdout and "x_5" not in done.stdout
    done = subprocess.run(
        [sys.executable, str(bundle / "predict.py"), *args, "--time-budget", "0.001"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "time budget" in done.stdout + done.stderr
    assert len(read_csv(out)) == len(table)  # every row still there, from the prior


def test_the_constants_predict_py_repeats_agree_with_the_workflows():
    """predict.py imports nothing of the workflow, so it restates a few constants: they must agree."""
    from birdclef import birdnet, settings

    assert bp.BIRDNET_SEGMENT == birdnet.SEGMENT and bp.BIRDNET_RATE == birdnet.SAMPLE_RATE
    assert bp.BLEND_SPACES == settings.BLEND_SPACES


def test_predict_py_lists_a_test_folder_as_the_workflow_does(tmp_path):
    from birdclef.layout import list_audio_files

    for name in ("b.ogg", "a.OGG", "notes.txt", ".hidden.ogg", "sub/c.ogg", ".cache/d.ogg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert bp.list_audio(tmp_path) == [tmp_path / n for n in list_audio_files(tmp_path)]
    assert [p.name for p in bp.list_audio(tmp_path)] == ["a.OGG", "b.ogg", "notes.txt", "c.ogg"]
    assert bp.list_audio(tmp_path / "absent") == []
