# Helpers and paths shared by every rule file.
import functools
import sys
from pathlib import Path

from snakemake.utils import validate

# First, before the package (and torch) is imported: a config the schema refuses fails in a second or two.
validate(config, schema="schemas/config.schema.yaml")

# The rules' scripts import the package beside them; so does this file, for the
# configuration layer (birdclef.settings) and the result paths (birdclef.layout),
# both stdlib only, so that planning the DAG never imports torch.
sys.path.insert(0, str(Path(workflow.basedir) / "workflow_scripts"))

from birdclef import layout  # noqa: E402
from birdclef.layout import list_audio_files  # noqa: E402
from birdclef.backgrounds import split_backgrounds  # noqa: E402
from birdclef.settings import ConfigError, is_hub_name, resolve  # noqa: E402
from birdclef.shards import group_by_shard, shard_name  # noqa: E402

# Then every cross-check the schema cannot express, once, into one plan.
try:
    PLAN = resolve(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

DATA_DIR = config["data_dir"].rstrip("/")
DEMO_DIR = "resources/demo"
USE_DEMO = os.path.normpath(DATA_DIR) == DEMO_DIR


def train_audio_inputs(wildcards):
    """Every file under train_audio/, so that a changed recording reruns the manifest.

    The demo folder belongs to rule demo_data, whose outputs change exactly when
    it reruns, so there the folder itself stands for its files (and the DAG is
    complete in a dry-run before the demo exists).
    """
    root = Path(DATA_DIR) / "train_audio"
    if USE_DEMO:
        return [str(root)]
    if not root.is_dir():
        raise WorkflowError(f"data_dir: {root} is not a folder; data_dir must be a Kaggle BirdCLEF folder")
    return [str(root / name) for name in list_audio_files(root)]


# --- The manifest is a checkpoint ----------------------------------------------
# Which clips exist is known only once the manifest has run. Rules that read
# audio files take them as inputs through these functions, so a changed or added
# recording reruns exactly the jobs that read it.
BIRDNET_SHARDS = [shard_name(i) for i in range(config["birdnet"]["n_shards"])]


@functools.lru_cache(maxsize=4)
def _manifest_paths(clips: str, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    import pyarrow.parquet as pq

    table = pq.read_table(clips, columns=["clip_id", "path"]).to_pydict()
    return tuple(zip(table["clip_id"], table["path"]))


def manifest_paths() -> tuple[tuple[str, str], ...]:
    """(clip_id, path) of every clip in the manifest; waits for the checkpoint."""
    clips = checkpoints.manifest.get().output.clips
    return _manifest_paths(clips, os.stat(clips).st_mtime_ns)


def all_clip_audio(wildcards) -> list[str]:
    """Every audio file of the manifest."""
    return sorted({path for _, path in manifest_paths()})


@functools.lru_cache(maxsize=4)
def _manifest_shards(clips: str, mtime_ns: int, n_shards: int) -> dict[str, list[str]]:
    groups = group_by_shard(_manifest_paths(clips, mtime_ns), n_shards, key=lambda clip: clip[0])
    return {shard: sorted(path for _, path in members) for shard, members in groups.items()}


def birdnet_shard_audio(wildcards) -> list[str]:
    """The audio files of the clips in one BirdNET shard (by a stable hash of the clip id); waits for the manifest."""
    clips = checkpoints.manifest.get().output.clips
    shards = _manifest_shards(clips, os.stat(clips).st_mtime_ns, config["birdnet"]["n_shards"])
    return shards.get(wildcards.shard, [])


# --- Mel shards ---------------------------------------------------------------
# dedup is a checkpoint too: a training shard takes the audio of its own kept
# clips as inputs, and their labels and windows as params, so one added or
# relabelled clip rebuilds one shard.
MEL_TRAIN_SHARDS = [shard_name(i) for i in range(config["mel_shards"]["n_train_shards"])]
MEL_SOUNDSCAPE_SHARDS = [shard_name(i) for i in range(config["mel_shards"]["n_soundscape_shards"])]
TRAIN_ROW_COLUMNS = ["clip_id", "path", "primary_label", "secondary_labels", "birdnet_secondary"]
TRAIN_ROW_COLUMNS += ["duration_s", "best_windows", "quality_reason"]


@functools.lru_cache(maxsize=4)
def _kept_clips(clips: str, mtime_ns: int, n_shards: int) -> dict[str, list[tuple]]:
    import pandas as pd

    table = pd.read_parquet(clips, columns=[*TRAIN_ROW_COLUMNS, "keep"])
    rows = [
        tuple(tuple(v) if hasattr(v, "__len__") and not isinstance(v, str) else v for v in row[:-1])
        for row in table[table["keep"]].sort_values("clip_id").itertuples(index=False)
    ]
    return group_by_shard(rows, n_shards, key=lambda row: row[0])


def mel_train_rows(wildcards) -> list[tuple]:
    """The kept clips of one training shard, as they bear on its mels; waits for the dedup checkpoint."""
    clips = checkpoints.dedup.get().output.clips
    n = config["mel_shards"]["n_train_shards"]
    return _kept_clips(clips, os.stat(clips).st_mtime_ns, n).get(wildcards.shard, [])


def mel_train_audio(wildcards) -> list[str]:
    return sorted({row[1] for row in mel_train_rows(wildcards)})


@functools.lru_cache(maxsize=8)
def _soundscape_files(root: Path, background_share: float | None) -> tuple[list[str], list[str]]:
    """The files of a soundscape folder, listed once per Snakemake run: (those to use, those set aside as backgrounds)."""
    return split_backgrounds([str(root / name) for name in list_audio_files(root)], background_share)


@functools.lru_cache(maxsize=8)
def _soundscape_shards(root: Path, n_shards: int, background_share: float | None = None) -> dict[str, list[str]]:
    """The files of a soundscape folder by shard (backgrounds of the built validation set left out), hashed once."""
    paths = _soundscape_files(root, background_share)[0]
    return group_by_shard(paths, n_shards, key=lambda path: Path(path).stem)


def soundscape_inputs(wildcards, folder: str = "train_soundscapes") -> list[str]:
    """The soundscape files of one shard; the demo's folder stands for its files, as in the manifest.

    From train_soundscapes/ (pseudo-labels, BirdNET, distillation) the backgrounds of the built
    validation set are left out, when it is built (BACKGROUND_SHARE; the scripts leave them out
    of a folder too).
    """
    root = Path(DATA_DIR) / folder
    if USE_DEMO:
        return [str(root)]
    share = BACKGROUND_SHARE if folder == "train_soundscapes" else None
    return _soundscape_shards(root, config["mel_shards"]["n_soundscape_shards"], share).get(wildcards.shard, [])


# --- BirdNET embeddings -----------------------------------------------------------
# One embedding shard per mel shard, from the same audio files.
def embedding_audio(wildcards) -> list[str]:
    """The audio files of the mel shard that an embedding shard embeds."""
    if wildcards.set == "train":
        return mel_train_audio(wildcards)
    if wildcards.set == "soundscapes":
        return soundscape_inputs(wildcards)
    return validation_inputs(wildcards)


def embedding_shards(set_: str) -> list[str]:
    """Every embedding shard of one window set (train, soundscapes or validation)."""
    names = MEL_TRAIN_SHARDS if set_ == "train" else MEL_SOUNDSCAPE_SHARDS
    return expand("results/embeddings/{set}/{shard}.parquet", set=set_, shard=names)


def training_embeddings(set_: str, student: bool):
    """Input function: the embedding shards of ``set_`` when the model's training reads them (else none)."""

    def inputs(wildcards) -> list[str]:
        return embedding_shards(set_) if set_ in MODELS[wildcards.model].embedding_sets(student) else []

    return inputs


def model_window_inputs(set_: str):
    """Input function: the embedding shards of ``set_`` when the model of the wildcards predicts from embeddings."""

    def inputs(wildcards) -> list[str]:
        return embedding_shards(set_) if MODELS[wildcards.model].input == "embeddings" else []

    return inputs


# --- Models and training --------------------------------------------------------
# Each named model is resolved to its full settings once (PLAN.models), so that a typo
# in a backbone name or a train override stops the run before anything trains, and
# so that a changed knob reruns exactly the jobs of the models it touches.
MODELS = PLAN.models
FOLDS = PLAN.folds
STAGE_PATTERN = layout.STAGE_PATTERN
STUDENT_STAGE_PATTERN = layout.STUDENT_STAGE_PATTERN
round_of = layout.round_of

# --- Pseudo-label rounds ----------------------------------------------------------
# Round 1's teachers are the teachers; round n's are round n-1's students. Round n's
# students are the stage "student" (n = 1) or "student<n>", each with its own files.
ROUNDS = PLAN.rounds
STUDENT_STAGES = PLAN.student_stages
round_teachers = PLAN.round_teachers
round_teacher_weights = PLAN.round_teacher_weights
stage_models = PLAN.stage_models


def round_teacher_outputs(round_: int, name: str) -> list[str]:
    return fold_outputs(*round_teachers(round_), name)


def out_of_fold_teachers(wildcards) -> list[str]:
    """Round n's teachers that trained on soundscape windows: each labels only its own fold's held-out soundscapes."""
    stage, names = round_teachers(int(wildcards.round))
    return [name for name in names if PLAN.trains_on_soundscapes(stage, name)]


def pseudo_teacher_models(wildcards) -> list[str]:
    return round_teacher_outputs(int(wildcards.round), "model.pt")


def pseudo_embedding_inputs(wildcards) -> list[str]:
    """The soundscape windows' BirdNET embeddings and logits: when BirdNET labels, or a teacher predicts from them."""
    _, names = round_teachers(int(wildcards.round))
    needed = config["pseudo_label"]["birdnet_weight"] > 0 or any(MODELS[n].input == "embeddings" for n in names)
    return embedding_shards("soundscapes") if needed else []


# Models whose pretrained: is an hf-hub: name train from weights rule pretrained_weights fetched.
HUB_MODELS = [name for name, resolved in MODELS.items() if is_hub_name(resolved.model.pretrained)]


def pretrained_record(wildcards) -> list[str]:
    """The fetched hub weights' record of a model with an hf-hub: name; none for any other model."""
    return [f"results/pretrained/{wildcards.model}.json"] if wildcards.model in HUB_MODELS else []


def model_settings(wildcards) -> dict:
    return MODELS[wildcards.model].params()[0]


def train_config(wildcards) -> dict:
    return MODELS[wildcards.model].params()[1]


def student_train_config(wildcards) -> dict:
    return PLAN.student_train(wildcards.model)


def fold_outputs(stage: str, models: list[str], name: str) -> list[str]:
    """One file of every fold of every model of a stage (teacher or student)."""
    return layout.fold_files(stage, models, FOLDS, name)


# --- Labelled soundscapes that score the models ------------------------------------
# Given (validation: names a folder and a solution that exist, as on the demo), or else
# built by rule build_validation from each fold's held-out clips on background
# soundscapes set aside from train_soundscapes/ (birdclef.backgrounds), which are then
# never pseudo-labelled, scanned by BirdNET or distilled from.
_val = config["validation"]
HAS_GIVEN_VALIDATION = bool(_val["soundscapes"] and _val["solution"]) and (
    USE_DEMO or (Path(DATA_DIR, _val["soundscapes"]).is_dir() and Path(DATA_DIR, _val["solution"]).is_file())
)
VALIDATION_SOURCE = "given" if HAS_GIVEN_VALIDATION else "built"
BUILD_VALIDATION = VALIDATION_SOURCE == "built"
HAS_VALIDATION = HAS_GIVEN_VALIDATION or BUILD_VALIDATION
BUILT_VALIDATION_DIR = "results/validation"
VALIDATION_SOLUTION = (
    f"{BUILT_VALIDATION_DIR}/validation_solution.csv" if BUILD_VALIDATION else f"{DATA_DIR}/{_val['solution']}"
)
BACKGROUND_SHARE = PLAN.validation_build.background_share if BUILD_VALIDATION else None


def validation_inputs(wildcards) -> list[str]:
    """The validation soundscapes of one shard: given ones, or the built folder (standing for its files)."""
    if BUILD_VALIDATION:
        return [f"{BUILT_VALIDATION_DIR}/soundscapes"]
    return soundscape_inputs(wildcards, config["validation"]["soundscapes"])


def validation_fold_map(wildcards) -> list[str]:
    """Built validation: the table soundscape -> fold, so that each window is predicted by the fold that held it out."""
    return [f"{BUILT_VALIDATION_DIR}/soundscape_folds.csv"] if BUILD_VALIDATION else []


def background_soundscapes(wildcards) -> list[str]:
    """The train_soundscapes set aside as backgrounds of the built validation set; the demo's folder stands for its files."""
    root = Path(DATA_DIR) / "train_soundscapes"
    if USE_DEMO:
        return [str(root)]
    return _soundscape_files(root, BACKGROUND_SHARE)[1]


def kept_clip_audio(wildcards) -> list[str]:
    """The audio of every kept clip (the built validation set's clips); waits for the dedup checkpoint."""
    clips = checkpoints.dedup.get().output.clips
    shards = _kept_clips(clips, os.stat(clips).st_mtime_ns, config["mel_shards"]["n_train_shards"])
    return sorted({row[1] for rows in shards.values() for row in rows})


# BirdNET's zero-shot scores on the validation windows, from the logits cached with the embeddings.
ZERO_SHOT_OUTPUTS = (
    [
        "results/predictions/birdnet/zero_shot/validation.parquet",
        "results/predictions/birdnet/zero_shot/known_classes.json",
    ]
    if PLAN.uses_embeddings and HAS_VALIDATION
    else []
)


# The birdnet_head models scored on the validation windows, each against BirdNET zero-shot.
EMBEDDING_MEMBERS = [
    f"{stage}/{name}"
    for stage in ["teacher", *STUDENT_STAGES]
    for name in stage_models(stage)
    if MODELS[name].input == "embeddings"
]


def validation_predictions(stage: str, models: list[str]) -> list[str]:
    """Each model's predictions (mean of its folds) on the validation windows."""
    return [layout.validation_prediction(stage, model) for model in models]


def model_folds(wildcards) -> list[str]:
    """Every fold's model.pt of one (stage, model)."""
    return fold_outputs(wildcards.stage, [wildcards.model], "model.pt")


# --- Ensemble, export, inference ----------------------------------------------------
ENSEMBLE_MEMBERS = PLAN.ensemble_members


def ensemble_inputs(wildcards) -> list[str]:
    """What the weights are fitted on: every member's validation predictions, else its out-of-fold predictions."""
    paths = []
    for stage, name in map(layout.parse_member, ENSEMBLE_MEMBERS):
        if HAS_VALIDATION:
            paths += validation_predictions(stage, [name])
        else:
            paths += fold_outputs(stage, [name], "oof.parquet")
    return paths


def weighted_members() -> list[str]:
    """The members with a weight above zero; waits for the fit_ensemble checkpoint."""
    import json

    weights = json.loads(Path(checkpoints.fit_ensemble.get().output.weights).read_text())
    return [m for m, entry in weights["members"].items() if entry["weight"] > 0]


def exported_members(wildcards) -> list[str]:
    """quant.json and the IR files of every member with a weight above zero."""
    names = ["quant.json", "fp32.xml", "fp32.bin", "int8.xml", "int8.bin"]
    return [f"{layout.export_dir(member)}/{name}" for member in weighted_members() for name in names]


def exported_quant_reports(wildcards) -> list[str]:
    """quant.json of every member with a weight above zero."""
    return [path for path in exported_members(wildcards) if path.endswith("quant.json")]


def export_eval_inputs(wildcards) -> list[str]:
    """The windows the INT8 gate scores on: validation soundscapes, else the training chunks.

    Built validation soundscapes hold held-out clips of every fold, and the gate runs the
    fold-mean IR, whose other folds trained on most of those clips: fine for comparing
    FP32 with INT8 on the same windows, but not a score of the model (score_models and
    fit_ensemble have those, each window predicted out of fold).
    """
    if HAS_VALIDATION:
        return expand("results/mels/validation/{shard}.parquet", shard=MEL_SOUNDSCAPE_SHARDS)
    return expand("results/mels/train/{shard}.parquet", shard=MEL_TRAIN_SHARDS)


def export_eval_embeddings(wildcards) -> list[str]:
    """The BirdNET embeddings of the gate's windows, for a member that predicts from embeddings."""
    if MODELS[wildcards.model].input != "embeddings":
        return []
    return embedding_shards("validation" if HAS_VALIDATION else "train")


# --- The bundle ---------------------------------------------------------------------
# The inputs of the bundle's members (mels, embeddings): which runtime wheels it ships.
BUNDLE_INPUTS = sorted({MODELS[layout.parse_member(m)[1]].input for m in PLAN.ensemble_members})


def installed_versions(names: list[str]) -> dict[str, str | None]:
    """The versions installed here (None: not installed): the bundle's wheels follow them, so an upgrade refetches."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def bundle_timing_inputs(wildcards) -> list[str]:
    """The unlabelled soundscapes the bundle is timed on (the demo's folder stands for its files)."""
    n = config["bundle"]["timing_soundscapes"]
    root = Path(DATA_DIR) / "train_soundscapes"
    if n == 0:
        return []
    if USE_DEMO:
        return [str(root)]
    return _soundscape_files(root, BACKGROUND_SHARE)[0][:n]


def test_audio_inputs(wildcards) -> list[str]:
    """Every test soundscape; the demo's folder stands for its files."""
    root = Path(DATA_DIR) / config["infer"]["test_soundscapes"]
    if USE_DEMO:
        return [str(root)]
    return [str(root / name) for name in list_audio_files(root)]


def sample_submission_input(wildcards) -> list[str]:
    """sample_submission.csv when the data has one (Kaggle's always do); else columns come from the taxonomy."""
    path = Path(DATA_DIR) / config["infer"]["sample_submission"]
    return [str(path)] if USE_DEMO or path.is_file() else []


_test_solution = config["infer"]["solution"]
HAS_TEST_SOLUTION = bool(_test_solution) and (USE_DEMO or Path(DATA_DIR, _test_solution).is_file())


def final_outputs() -> list[str]:
    """What a whole run builds (rule all), each figure of the report among it; the runtimes come after these."""
    return [
        "results/manifest/summary.png",
        "results/filter/quality_filter.png",
        "results/dedup/clips.parquet",
        "results/dedup/duplicates.csv",
        "results/dedup/duplicates.png",
        *expand("results/mels/train/{shard}.parquet", shard=MEL_TRAIN_SHARDS),
        *expand("results/mels/soundscapes/{shard}.parquet", shard=MEL_SOUNDSCAPE_SHARDS),
        *expand("results/models/teacher/{model}/training.png", model=PLAN.teachers),
        *expand("results/pseudo/round{round}/pseudo_labels.png", round=range(1, ROUNDS + 1)),
        *expand("results/models/{stage}/{model}/training.png", stage=STUDENT_STAGES, model=PLAN.students),
        *([f"{BUILT_VALIDATION_DIR}/example.png"] if BUILD_VALIDATION else []),
        *(["results/scores/models.png", "results/scores/rounds.png"] if HAS_VALIDATION else []),
        *(["results/scores/embedding_members_vs_zero_shot.png"] if ZERO_SHOT_OUTPUTS and EMBEDDING_MEMBERS else []),
        "results/ensemble/weights.json",
        "results/ensemble/per_class.png",
        "results/export/summary.png",
        "results/bundle",
        "results/submission.csv",
        *(["results/score.json"] if HAS_TEST_SOLUTION else []),
    ]
