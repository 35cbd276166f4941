"""Does embedding distillation change the deployed model? INT8 IR speed of a distilled CNN against its plain twin.

    .venv/bin/python benchmarks/distilled_speed.py --results results \\
        --members teacher/regnety_sed teacher/regnety_emb [--windows 64] [--rounds 5] [--threads 2]

Both members' fold checkpoints (``results/models/<member>/fold*/model.pt``) are
exported as the workflow exports them (FoldMean -> FP32 IR -> NNCF INT8, calibrated on
the same cached soundscape windows), into a temporary folder. Then the two INT8 IRs
are timed in alternation, ``--rounds`` rounds of best-of-3 each, on the same windows,
so that the machine's noise falls on both alike. Printed: each state dict's tensor
count (the projection of embedding distillation is training-only, so the two must
match), each IR's op count, windows/s per member (the best round) and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import cpu_line  # noqa: E402

from birdclef import export  # noqa: E402
from birdclef.mel_shards import read_meta  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results")
    parser.add_argument("--members", nargs=2, default=["teacher/regnety_sed", "teacher/regnety_emb"])
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(cpu_line())

    shards = sorted((args.results / "mels" / "soundscapes").glob("shard-*.parquet"))
    mel = read_meta(shards[0]).mel  # the mels the models were trained on
    windows = export.sample_windows(shards, mel, args.windows, seed=0)
    compiled = {}
    with tempfile.TemporaryDirectory() as tmp:
        for member in args.members:
            paths = sorted((args.results / "models" / member).glob("fold*/model.pt"))
            states = [torch.load(p, weights_only=True)["state_dict"] for p in paths]
            model, _, _ = export.load_member(paths)
            out = Path(tmp) / member.replace("/", "_")
            fp32 = export.export_fp32(model, windows.shape[1:], out / "fp32.xml")
            export.quantize_int8(fp32, windows, out / "int8.xml", subset_size=len(windows))
            compiled[member] = export.compile_ir(out / "int8.xml", args.threads, "int8")
            n_ops = len(export.core().read_model(out / "int8.xml").get_ops())
            print(f"{member}: {len(paths)} folds, {len(states[0])} tensors per state dict, INT8 IR of {n_ops} ops")
        best = {m: 0.0 for m in args.members}
        for _ in range(args.rounds):
            for member, c in compiled.items():
                speed = export.windows_per_second(lambda w, c=c: export.predict_ir(c, w, 16), windows, repeats=3)
                best[member] = max(best[member], speed)
    for member, speed in best.items():
        print(f"{member}: INT8 {speed:.0f} windows/s (best of {args.rounds} rounds)")
    a, b = (best[m] for m in args.members)
    print(f"ratio {args.members[1]} / {args.members[0]}: {b / a:.3f} (target: within 0.90-1.10)")


if __name__ == "__main__":
    main()
