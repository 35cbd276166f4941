"""OpenVINO IR export of an ensemble member, NNCF INT8 quantisation, and the gate that picks between them.

A member is one model name whose fold checkpoints are averaged: the mean of the
folds' sigmoid probabilities, as ``predict.predict_shards`` computes it in
PyTorch. That whole mean is exported as one IR (``FoldMean``), so the deployed
graph returns what the PyTorch ensemble scores, probabilities and all.

INT8 is only worth shipping if it keeps the score: each member is scored on
labelled windows in PyTorch, as the FP32 IR and as the INT8 IR, and the INT8 IR
is chosen only if its score is within ``tolerance`` of the FP32 IR's
(``gate``). The FP32 IR must also agree with PyTorch, or the export is refused.

Precision is explicit everywhere. OpenVINO's CPU plugin runs an "FP32" model in
bf16 on a CPU with AMX / AVX-512 BF16 unless asked otherwise, and ``save_model``
stores FP16 weights unless asked otherwise; both would blur the comparison the
gate makes. Every IR is therefore saved with ``compress_to_fp16=False`` and
compiled with ``INFERENCE_PRECISION_HINT=f32``, so the INT8 IR differs from the
FP32 one by its quantised operations only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import nncf
import numpy as np
import openvino as ov
import pandas as pd
import torch
from torch import nn

from birdclef.atomic import atomic_path
from birdclef.bundle_predict import (  # the bundle's OpenVINO runner is the workflow's too
    compile_ir,
    predict_ir,
)
from birdclef.dataset import EmbeddingDataset, MelShardDataset
from birdclef.kinds import REGISTRY, Kind, checkpoint_kind, load_model
from birdclef.metrics import macro_roc_auc
from birdclef.settings import MelConfig

log = logging.getLogger(__name__)

OUTPUT_NAME = "probabilities"


class FoldMean(nn.Module):
    """The fold models of one member: (batch, 1, mels, frames) -> mean sigmoid probability (batch, classes).

    ``kind``: their kind (birdclef.kinds), when known: what the IR takes, whether INT8 is tried.
    """

    def __init__(self, folds: Sequence[nn.Module], kind: Kind | None = None) -> None:
        super().__init__()
        if not folds:
            raise ValueError("a member needs at least one fold model")
        self.folds = nn.ModuleList(folds)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.sigmoid(m(x)) for m in self.folds]).mean(dim=0)


def load_member(model_paths: Sequence[str | Path]) -> tuple[FoldMean, list[str], str]:
    """The fold checkpoints of one member as a ``FoldMean`` (eval mode), with their shared class list and mel hash.

    Folds of other classes or other mels are refused: averaging them would silently misalign columns or frontends.
    """
    if not model_paths:
        raise ValueError("no fold checkpoints given")
    folds, classes, mel_hash, kind = [], None, None, None
    for path in model_paths:
        model, payload = load_model(path)
        kind = kind or checkpoint_kind(payload)
        if payload.get("mel_hash") is None:
            raise ValueError(f"{path}: has no mel_hash, so its IR could not be checked against a mel frontend")
        if classes is None:
            classes, mel_hash = list(payload["classes"]), payload["mel_hash"]
        elif payload["classes"] != classes:
            raise ValueError(f"{path}: its class list differs from {model_paths[0]}'s")
        elif payload["mel_hash"] != mel_hash:
            raise ValueError(
                f"{path}: trained on mels with hash {payload['mel_hash']}, not {mel_hash} as {model_paths[0]}"
            )
        folds.append(model)
    return FoldMean(folds, kind).eval(), classes, mel_hash


def _save_ir(model: ov.Model, xml_path: str | Path) -> None:
    """``ov.save_model`` with FP32 weights kept, written under a temporary name and then renamed.

    Snakemake removes the outputs of a job that fails, but not of one killed with the
    whole run (power loss, SIGKILL, a cluster's time limit): a half-written pair must
    never sit under the final names. ``atomic_path`` renames the .bin that ``save_model``
    writes beside the temporary .xml first, so a final .xml implies its final .bin.
    OpenVINO finds the weights by the .xml's name, not by a path inside it.
    """
    with atomic_path(xml_path) as tmp:
        ov.save_model(model, tmp, compress_to_fp16=False)


def export_fp32(member: nn.Module, input_shape: Sequence[int], xml_path: str | Path) -> ov.Model:
    """Convert ``member`` to an OpenVINO model with a dynamic batch and save it as an FP32 IR at ``xml_path``.

    ``input_shape``: one input without the batch, (1, mels, frames) for a CNN, (1024,) for a birdnet_head.
    """
    member = member.eval()
    example = torch.zeros(2, *input_shape)
    with torch.no_grad():
        # Only the batch is dynamic: fixed mels and frames let the plugin plan memory once,
        # and a window of another shape is an error rather than a silently different model.
        model = ov.convert_model(member, example_input=example, input=[(-1, *input_shape)])
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    _save_ir(model, xml_path)
    log.info("FP32 IR: %s", xml_path)
    return model


def quantize_int8(
    ov_model: ov.Model,
    calibration: np.ndarray,
    xml_path: str | Path,
    subset_size: int = 300,
    preset: nncf.QuantizationPreset = nncf.QuantizationPreset.MIXED,
    fast_bias_correction: bool = True,
) -> ov.Model:
    """NNCF post-training INT8 quantisation of ``ov_model`` on ``calibration`` windows (n x 1 x mels x frames).

    Deterministic: each calibration item is one window (batch 1), and NNCF reads the first
    ``subset_size`` items in order, so the same windows give the same IR. Batch 1 also
    keeps NNCF's per-sample statistics exact (it warns that batched statistics can be off).
    ``preset``: MIXED (symmetric weights, asymmetric activations), as NNCF recommends for
    non-ReLU activations: HSwish and SiLU outputs reach below zero but not far, and 0..1
    mels are not centred at zero, so a symmetric activation range would waste most of its
    levels. ``model_type`` stays unset: ``TRANSFORMER`` is for attention graphs, not CNNs.
    ``fast_bias_correction``: NNCF's default; the slower variant rarely matters for CNNs.
    """
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    if calibration.ndim < 2 or len(calibration) == 0:
        raise ValueError(f"calibration must be n x (one input's shape) with n > 0, got shape {calibration.shape}")
    items = [calibration[i : i + 1] for i in range(len(calibration))]
    quantized = nncf.quantize(
        ov_model,
        nncf.Dataset(items),
        preset=preset,
        subset_size=min(subset_size, len(items)),
        fast_bias_correction=fast_bias_correction,
    )
    _save_ir(quantized, xml_path)
    log.info("INT8 IR: %s (%d calibration windows)", xml_path, min(subset_size, len(items)))
    return quantized


def predict_torch(member: nn.Module, windows: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """``member``'s outputs on ``windows`` (n x 1 x mels x frames) in eager PyTorch, float32."""
    member = member.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            out.append(member(torch.from_numpy(np.asarray(windows[start : start + batch_size], np.float32))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def windows_per_second(fn: Callable[[np.ndarray], object], windows: np.ndarray, repeats: int = 3) -> float:
    """Windows per second of ``fn(windows)``: one warm-up call, then the best of ``repeats`` timed calls.

    Best, not median: on a shared machine other work only ever adds time, so the fastest
    run is the closest to the code's own cost and the most repeatable figure. The warm-up
    pays for first-call allocations and kernel selection, which a long job pays once.
    """
    if len(windows) == 0 or repeats < 1:
        raise ValueError("windows_per_second needs windows and at least one repeat")
    fn(windows)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn(windows)
        best = min(best, time.perf_counter() - start)
    return len(windows) / best


def gate(fp32_score: float, int8_score: float, tolerance: float) -> tuple[str, str]:
    """("int8" or "fp32", why): INT8 when its score is within ``tolerance`` of the FP32 IR's.

    A NaN score (no labelled windows, or no class with both positives and negatives) keeps
    FP32: INT8's accuracy was then not measured, and an unmeasured loss is not shipped.
    """
    if math.isnan(fp32_score) or math.isnan(int8_score):
        return "fp32", "no score to compare (no labelled windows with positives and negatives): INT8 unverified"
    drop = fp32_score - int8_score
    if int8_score >= fp32_score - tolerance:
        return "int8", f"INT8 score {int8_score:.5f} is within {tolerance} of FP32's {fp32_score:.5f} (drop {drop:.5f})"
    return "fp32", f"INT8 score {int8_score:.5f} is {drop:.5f} below FP32's {fp32_score:.5f}, more than {tolerance}"


def sample_windows(
    shard_paths: Sequence[str | Path],
    mel: MelConfig,
    n: int,
    seed: int = 0,
    embedding_paths: Sequence[str | Path] | None = None,
) -> np.ndarray:
    """``n`` model inputs (n x 1 x mels x frames, float32) drawn at random with ``seed`` from mel shards; all if fewer.

    With ``embedding_paths``, the inputs are the windows' BirdNET embeddings (n x 1024) instead.

    Seeded random rather than evenly spaced: soundscape windows in file order follow each
    recording's structure (dawn chorus first, say), which a fixed stride can alias. The
    draw is read in row order so each Parquet row group is decoded once.
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    ds = _windows_dataset(shard_paths, mel, embedding_paths)
    rows = np.arange(len(ds))
    if n < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))
    out = np.empty((len(rows), *ds.input_shape), dtype=np.float32)
    for k, i in enumerate(rows):
        out[k] = ds.input_tensor(int(i)).numpy()
    return out


def _windows_dataset(
    shard_paths: Sequence[str | Path], mel: MelConfig, embedding_paths: Sequence[str | Path] | None
) -> MelShardDataset:
    if embedding_paths:
        return EmbeddingDataset(shard_paths, embedding_paths, mel)
    return MelShardDataset(shard_paths, mel)


def _score(score_fn: Callable[[np.ndarray, np.ndarray], float], labels: np.ndarray | None, probs: np.ndarray) -> float:
    return float("nan") if labels is None else float(score_fn(labels, probs))


def export_member(
    model_paths: Sequence[str | Path],
    calibration: np.ndarray,
    eval_windows: np.ndarray,
    eval_labels: np.ndarray | None,
    out_dir: str | Path,
    tolerance: float = 0.005,
    subset_size: int = 300,
    threads: int = 2,
    batch_size: int = 16,
    score_fn: Callable[[np.ndarray, np.ndarray], float] = macro_roc_auc,
    timing_windows: int = 64,
    repeats: int = 3,
    max_fp32_diff: float = 1e-4,
) -> dict:
    """Export one member to ``out_dir``/fp32.xml,.bin and int8.xml,.bin; return what becomes its quant.json.

    ``calibration``: windows (n x 1 x mels x frames) NNCF calibrates on, unlabelled.
    ``eval_windows`` (alike) and ``eval_labels`` (n x classes, 0/1) score PyTorch, the FP32
    IR and the INT8 IR with ``score_fn``; with ``eval_labels`` None the scores are None
    and the gate keeps FP32. The FP32 IR must match PyTorch within ``max_fp32_diff`` (a
    probability) or a RuntimeError is raised: the gate compares the IRs with each other,
    so a broken conversion would pass it unseen. Speeds are timed on the first
    ``timing_windows`` eval windows, PyTorch limited to ``threads`` threads as OpenVINO is.
    """
    out_dir = Path(out_dir)
    member, classes, _ = load_member(model_paths)
    eval_windows = np.ascontiguousarray(eval_windows, dtype=np.float32)
    if eval_windows.ndim < 2 or len(eval_windows) == 0:
        raise ValueError(f"eval_windows must be n x (one input's shape) with n > 0, got shape {eval_windows.shape}")
    if eval_labels is not None and np.shape(eval_labels) != (len(eval_windows), len(classes)):
        raise ValueError(f"eval_labels must be {len(eval_windows)} x {len(classes)}, got {np.shape(eval_labels)}")
    if np.shape(calibration)[1:] != eval_windows.shape[1:]:
        raise ValueError(f"calibration windows are {np.shape(calibration)[1:]}, eval windows {eval_windows.shape[1:]}")
    fp32_model = export_fp32(member, eval_windows.shape[1:], out_dir / "fp32.xml")
    quantize_int8(fp32_model, calibration, out_dir / "int8.xml", subset_size=subset_size)
    compiled = {
        "fp32": compile_ir(out_dir / "fp32.xml", threads, "f32"),
        "int8": compile_ir(out_dir / "int8.xml", threads, "int8"),
    }

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # the same cores as OpenVINO gets, for a fair speed and a polite job
    try:
        runners = {
            "torch": lambda w: predict_torch(member, w, batch_size),
            "fp32": lambda w: predict_ir(compiled["fp32"], w, batch_size),
            "int8": lambda w: predict_ir(compiled["int8"], w, batch_size),
        }
        probs = {name: run(eval_windows) for name, run in runners.items()}
        timed = eval_windows[:timing_windows]
        speeds = {name: windows_per_second(run, timed, repeats) for name, run in runners.items()}
    finally:
        torch.set_num_threads(torch_threads)

    diff = float(np.abs(probs["fp32"] - probs["torch"]).max())
    if not diff <= max_fp32_diff:
        raise RuntimeError(f"the FP32 IR differs from PyTorch by up to {diff:.2e}, more than {max_fp32_diff}")
    scores = {name: _score(score_fn, eval_labels, p) for name, p in probs.items()}
    choice, reason = gate(scores["fp32"], scores["int8"], tolerance)
    kind = member.kind
    if not kind.quantize:
        choice = "fp32"
        reason = f"{kind.why_not_int8} (here: INT8 {speeds['int8']:.0f}, FP32 {speeds['fp32']:.0f} windows/s)"
    log.info("scores %s, windows/s %s: %s (%s)", scores, speeds, choice, reason)
    return {
        "kind": next(name for name, k in REGISTRY.items() if k is kind),
        "classes": len(classes),
        "calibration_windows": int(min(subset_size, len(calibration))),
        "eval_windows": len(eval_windows),
        "scores": {name: None if math.isnan(v) else v for name, v in scores.items()},  # strict JSON has no NaN
        "max_abs_diff_fp32_vs_torch": diff,
        "max_abs_diff_int8_vs_fp32": float(np.abs(probs["int8"] - probs["fp32"]).max()),
        "windows_per_s": speeds,
        "tolerance": tolerance,
        "choice": choice,
        "reason": reason,
        "precision_hint": "f32",
    }


def labelled_windows(
    shard_paths: Sequence[str | Path],
    mel: MelConfig,
    solution: pd.DataFrame | None = None,
    embedding_paths: Sequence[str | Path] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Windows (n x 1 x mels x frames, float32) and their 0/1 labels, to judge an exported model on.

    With a ``solution``, the shards are validation soundscapes and the labels are its
    rows (matched by row_id; windows it does not list are left out). Without one, the
    shards are training chunks and the label is the primary one. With ``embedding_paths``
    the inputs are the windows' BirdNET embeddings (n x 1024).
    """
    ds = _windows_dataset(shard_paths, mel, embedding_paths)
    if solution is not None:
        truth = solution.set_index("row_id")[ds.classes]
        index = np.flatnonzero(ds.rows["row_id"].isin(truth.index).to_numpy())
        labels = truth.loc[ds.rows["row_id"].iloc[index]].to_numpy(np.float64)
    else:
        index = np.flatnonzero((ds.rows["primary"] >= 0).to_numpy())
        labels = np.zeros((len(index), len(ds.classes)))
        labels[np.arange(len(index)), ds.rows["primary"].iloc[index].to_numpy()] = 1.0
    windows = np.stack([ds.input_tensor(int(i)).numpy() for i in index]).astype(np.float32) if len(index) else None
    if windows is None:
        raise ValueError("no labelled windows in " + ", ".join(map(str, shard_paths)))
    return windows, labels
