"""CPU training throughput of one train step, the knobs that decide how fast the demo trains.

    .venv/bin/python benchmarks/train_step.py [--models regnety_002 mobilenetv3_small_100] [--seconds 8]

Times forward + backward + AdamW of the workflow's own model (``BirdModel``: timm
backbone, ``features_only``, the configured head) on 5 s log-mel windows
(1 x 128 x 321), in samples per second, warmed, and prints in one run:
- batch size 4, 8, 16, 32 at 2 threads;
- channels_last against the default memory format (batch 8, 2 threads);
- 1 thread against 2 threads for one job;
- two 1-thread jobs at once (two processes, summed) against one 2-thread job:
  what Snakemake's ``threads:`` per training job should be on a 2-core machine.
Every figure is a ratio to its alternative measured in the same run; the CPU model and
flags are printed beside them, since these machines change from session to session.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

import torch  # noqa: E402
from machine import cpu_line  # noqa: E402

from birdclef.losses import weighted_loss  # noqa: E402
from birdclef.models import BirdModel  # noqa: E402
from birdclef.settings import MelConfig, ModelConfig  # noqa: E402

HEADS = {"regnety_002": "sed", "mobilenetv3_small_100": "conv1x1"}
N_CLASSES = 12


def step_rate(backbone: str, batch: int, threads: int, channels_last: bool, seconds: float) -> float:
    """Samples/s of warmed train steps of the workflow's model for about ``seconds``."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    frames = MelConfig().n_frames(5 * MelConfig().sample_rate)
    model = BirdModel(ModelConfig(backbone=backbone, head=HEADS.get(backbone, "sed")), N_CLASSES).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, MelConfig().n_mels, frames)
    y = (torch.rand(batch, N_CLASSES) > 0.9).float()
    w = torch.ones(batch)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        loss = weighted_loss(model(x), y, w, "bce", 2.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up: the first steps allocate and pick kernels
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n * batch / (time.perf_counter() - t0)


def _job(args: tuple, out: mp.Queue) -> None:
    out.put(step_rate(*args))


def parallel_rates(args: tuple, jobs: int) -> list[float]:
    """``jobs`` processes at once, each running ``step_rate(*args)``; their rates."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_job, args=(args, out)) for _ in range(jobs)]
    for p in procs:
        p.start()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(HEADS))
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per measurement")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    print(cpu_line())
    results: dict[str, dict] = {}
    for backbone in args.models:
        r: dict[str, float] = {}
        for batch in (4, 8, 16, 32):
            r[f"batch{batch}"] = parallel_rates((backbone, batch, 2, False, args.seconds), 1)[0]
        r["channels_last"] = parallel_rates((backbone, 8, 2, True, args.seconds), 1)[0]
        r["one_job_1_thread"] = parallel_rates((backbone, 8, 1, False, args.seconds), 1)[0]
        two = parallel_rates((backbone, 8, 1, False, args.seconds), 2)
        r["two_jobs_1_thread_each"] = sum(two)
        results[backbone] = r
        print(f"\n{backbone} (samples/s of forward + backward + AdamW, 1x128x321 windows, {N_CLASSES} classes)")
        base = r["batch8"]
        for batch in (4, 8, 16, 32):
            rate = r[f"batch{batch}"]
            print(f"  batch {batch:>2}, 2 threads: {rate:7.1f}  ({rate / base:.2f}x batch 8)")
        rate = r["channels_last"]
        print(f"  channels_last, batch 8:  {rate:7.1f}  ({rate / base:.2f}x default)")
        rate = r["one_job_1_thread"]
        print(f"  1 thread, batch 8:       {rate:7.1f}  ({rate / base:.2f}x 2 threads)")
        rate = r["two_jobs_1_thread_each"]
        each = f"{two[0]:.1f} + {two[1]:.1f}"
        print(f"  two 1-thread jobs:       {rate:7.1f}  ({rate / base:.2f}x one 2-thread job; {each})")
    if args.out:
        args.out.write_text(json.dumps({"cpu": cpu_line(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
