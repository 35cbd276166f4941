import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from birdclef import bundle_predict, export
from birdclef.dataset import MelShardDataset

from conftest import SHARD_CLASSES as CLASSES
from conftest import SHARD_MEL as MEL
from conftest import saved_model


@pytest.fixture(scope="module")
def windows(soundscape_shard) -> np.ndarray:
    """Every window of the demo soundscape shard (8 x 1 x 32 x 321), float32."""
    return export.sample_windows([soundscape_shard], MEL, 1000, seed=0)


@pytest.fixture(scope="module")
def exported(windows, tmp_path_factory):
    """A two-fold member, its FP32 IR and its INT8 IR (calibrated on the shard's windows), exported once."""
    out = tmp_path_factory.mktemp("export")
    paths = [saved_model(out / "fold0.pt", 0), saved_model(out / "fold1.pt", 1)]
    member, _, _ = export.load_member(paths)
    fp32 = export.export_fp32(member, windows.shape[1:], out / "fp32.xml")
    export.quantize_int8(fp32, windows, out / "int8.xml", subset_size=300)
    return {"dir": out, "paths": paths, "member": member}


class FirstMels(nn.Module):
    """Each window's first three mel values of its first frame: outputs that identify the window exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, :3, 0] * 1.0


def test_sample_windows_is_seeded_and_reads_the_shards(soundscape_shard, windows):
    ds = MelShardDataset([soundscape_shard], MEL)
    assert windows.shape == (len(ds), 1, MEL.n_mels, ds.mel_shape[1]) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows[3, 0], ds.mel(3).astype(np.float32))  # all of them, in order
    a, b = (export.sample_windows([soundscape_shard], MEL, 4, seed=1) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    rows = [int(np.flatnonzero((windows == w).all(axis=(1, 2, 3)))[0]) for w in a]
    assert len(a) == 4 and rows == sorted(set(rows))  # distinct windows, read in row order


def test_the_fp32_ir_is_the_pytorch_member_in_fp32(exported, windows):
    torch_probs = export.predict_torch(exported["member"], windows)
    manual = np.mean(
        [torch.sigmoid(m(torch.from_numpy(windows))).detach().numpy() for m in exported["member"].folds], 0
    )
    np.testing.assert_allclose(torch_probs, manual, atol=1e-7)  # FoldMean is the mean of the folds' probabilities

    compiled = export.compile_ir(exported["dir"] / "fp32.xml", threads=2, precision="f32")
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    probs = export.predict_ir(compiled, windows, batch_size=3)  # 3 + 3 + 2: a batch that does not divide n
    assert probs.shape == (len(windows), len(CLASSES)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, torch_probs, atol=1e-6)


def test_the_tolerance_would_catch_a_bf16_run(exported, windows):
    core = bundle_predict.core()
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16: its default precision is f32 already")
    default = core.compile_model(core.read_model(exported["dir"] / "fp32.xml"), "CPU", {"INFERENCE_NUM_THREADS": 2})
    diff = np.abs(export.predict_ir(default, windows) - export.predict_torch(exported["member"], windows)).max()
    assert diff > 1e-5  # far outside the 1e-6 the f32 IR is held to


def test_irs_keep_fp32_weights_and_the_int8_ir_is_quantized(exported):
    core, out = bundle_predict.core(), exported["dir"]
    fp32, int8 = core.read_model(out / "fp32.xml"), core.read_model(out / "int8.xml")
    for model in (fp32, int8):
        types = {
            op.get_output_element_type(0).get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"
        }
        assert "f16" not in types and "f32" in types
    n_params = sum(p.numel() for p in exported["member"].parameters())
    assert (out / "fp32.bin").stat().st_size > 3.5 * n_params  # FP16 would be about 2 bytes per parameter
    assert not bundle_predict.is_quantized(fp32) and bundle_predict.is_quantized(int8)
    assert "FakeQuantize" in {op.get_type_name() for op in int8.get_ops()}
    assert (out / "int8.bin").stat().st_size < (out / "fp32.bin").stat().st_size / 2  # int8 weights
    assert not list(out.glob(".*"))  # written under hidden temporary names (birdclef.atomic), then renamed


def test_the_int8_ir_is_close_to_fp32_and_gives_probabilities(exported, windows):
    fp32 = export.predict_ir(export.compile_ir(exported["dir"] / "fp32.xml", 2, "f32"), windows)
    int8 = export.predict_ir(export.compile_ir(exported["dir"] / "int8.xml", 2, "int8"), windows, batch_size=5)
    assert int8.shape == fp32.shape and ((int8 >= 0) & (int8 <= 1)).all()
    np.testing.assert_allclose(int8, fp32, atol=0.02)
    assert not np.array_equal(int8, fp32)  # it did quantize something


def test_quantization_is_deterministic(exported, windows, tmp_path):
    fp32 = bundle_predict.core().read_model(exported["dir"] / "fp32.xml")
    export.quantize_int8(fp32, windows, tmp_path / "again.xml", subset_size=300)
    assert (tmp_path / "again.bin").read_bytes() == (exported["dir"] / "int8.bin").read_bytes()


def test_compile_ir_refuses_a_swapped_precision(exported):
    with pytest.raises(ValueError, match="quantised"):
        export.compile_ir(exported["dir"] / "int8.xml", 2, "f32")
    with pytest.raises(ValueError, match="not quantised"):
        export.compile_ir(exported["dir"] / "fp32.xml", 2, "int8")
    with pytest.raises(ValueError, match="precision"):
        export.compile_ir(exported["dir"] / "fp32.xml", 2, "bf16")


def test_predict_ir_returns_batches_in_input_order(windows, tmp_path):
    export.export_fp32(FirstMels(), windows.shape[1:], tmp_path / "probe.xml")
    compiled = export.compile_ir(tmp_path / "probe.xml", 2, "f32")
    expected = windows[:, 0, :3, 0]
    assert len(np.unique(expected, axis=0)) == len(windows)  # each output names its window
    perm = np.random.default_rng(0).permutation(len(windows))
    for batch_size in (1, 3, 8, 64):
        np.testing.assert_array_equal(export.predict_ir(compiled, windows[perm], batch_size), expected[perm])
    batches = (windows[perm][a:b] for a, b in ((0, 3), (3, 8)))  # an iterable of batches of their own sizes
    np.testing.assert_array_equal(export.predict_ir(compiled, batches), expected[perm])
    assert export.predict_ir(compiled, windows[:0]).shape == (0, 3)


def test_gate_keeps_int8_only_within_the_tolerance():
    assert export.gate(0.80, 0.796, 0.005)[0] == "int8"
    assert export.gate(0.80, 0.81, 0.005)[0] == "int8"
    assert export.gate(0.80, 0.80 - 0.005, 0.005)[0] == "int8"  # the boundary is allowed
    choice, reason = export.gate(0.80, 0.79, 0.005)
    assert choice == "fp32" and "below" in reason
    for fp32, int8 in ((math.nan, 0.8), (0.8, math.nan), (math.nan, math.nan)):
        choice, reason = export.gate(fp32, int8, 0.005)
        assert choice == "fp32" and "no score" in reason


def test_load_member_refuses_mismatched_folds(tmp_path):
    a = saved_model(tmp_path / "a.pt", 0)
    member, classes, mel_hash = export.load_member([a, saved_model(tmp_path / "b.pt", 1)])
    assert len(member.folds) == 2 and classes == CLASSES and mel_hash == MEL.hash
    with pytest.raises(ValueError, match="x.pt.*class list"):
        export.load_member([a, saved_model(tmp_path / "x.pt", 1, classes=["a", "b", "x"])])
    with pytest.raises(ValueError, match="m.pt.*hash"):
        export.load_member([a, saved_model(tmp_path / "m.pt", 1, mel_hash="0123")])
    with pytest.raises(ValueError, match="no fold"):
        export.load_member([])


KEYS = {
    "kind",
    "classes",
    "calibration_windows",
    "eval_windows",
    "scores",
    "max_abs_diff_fp32_vs_torch",
    "max_abs_diff_int8_vs_fp32",
    "windows_per_s",
    "tolerance",
    "choice",
    "reason",
    "precision_hint",
}


def test_export_member_writes_both_irs_and_its_report(exported, windows, tmp_path):
    labels = np.zeros((len(windows), len(CLASSES)), dtype=np.float32)
    labels[np.arange(len(windows)), np.arange(len(windows)) % len(CLASSES)] = 1  # every class has both kinds
    fast = {"subset_size": 5, "timing_windows": 4, "repeats": 1}
    report = export.export_member(exported["paths"], windows, windows, labels, tmp_path / "m", **fast)
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"fp32.xml", "fp32.bin", "int8.xml", "int8.bin"}
    assert set(report) == KEYS and json.loads(json.dumps(report, allow_nan=False)) == report
    assert report["classes"] == 3 and report["calibration_windows"] == 5 and report["eval_windows"] == len(windows)
    assert all(0 <= s <= 1 for s in report["scores"].values()) and report["precision_hint"] == "f32"
    assert all(v > 0 for v in report["windows_per_s"].values()) and report["max_abs_diff_fp32_vs_torch"] < 1e-6
    assert (report["choice"], report["reason"]) == export.gate(
        report["scores"]["fp32"], report["scores"]["int8"], 0.005
    )

    unlabelled = export.export_member(exported["paths"], windows, windows, None, tmp_path / "u", **fast)
    assert unlabelled["scores"] == {"torch": None, "fp32": None, "int8": None} and unlabelled["choice"] == "fp32"
    json.dumps(unlabelled, allow_nan=False)


def test_a_birdnet_head_member_exports_on_the_embedding_input_and_stays_fp32(tmp_path):
    from birdclef.birdnet_head import BirdNetHead
    from birdclef.models import save_model
    from birdclef.settings import ModelConfig

    cfg = ModelConfig(kind="birdnet_head", head="mlp", hidden=32)
    paths = []
    for k in range(2):
        torch.manual_seed(k)
        path = tmp_path / f"h{k}.pt"
        save_model(path, BirdNetHead(cfg, len(CLASSES)), CLASSES, {"mel_hash": MEL.hash})
        paths.append(path)
    emb = np.random.default_rng(0).random((12, 1024), dtype=np.float32)
    labels = np.eye(len(CLASSES), dtype=np.float32)[np.arange(12) % len(CLASSES)]
    report = export.export_member(paths, emb, emb, labels, tmp_path / "m", subset_size=5, timing_windows=4, repeats=1)
    assert (
        report["kind"] == "birdnet_head"
        and report["choice"] == "fp32"
        and "INT8 would save nothing" in report["reason"]
    )
    assert report["max_abs_diff_fp32_vs_torch"] < 1e-5
    ir = bundle_predict.core().read_model(tmp_path / "m" / "fp32.xml")
    assert [d.get_length() if d.is_static else -1 for d in ir.inputs[0].get_partial_shape()] == [-1, 1024]
