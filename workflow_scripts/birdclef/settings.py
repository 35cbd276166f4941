"""The configuration layer: every section's settings as a dataclass, and the plan the workflow runs.

Snakemake imports this module at every start (each dry-run, ``--lint``, ``--report``,
and twice per job on a cluster node), so it is **stdlib only**: no numpy, no torch,
no timm. ``resolve(config)`` turns a schema-validated config into one ``Plan``, and
every cross-check that a JSON schema cannot express raises one ``ConfigError``
naming the key.

The JSON schema (``rules/schemas/config.schema.yaml``) is the one source of
defaults; the dataclasses repeat them so that the package can be used without the
workflow, and ``tests/test_settings.py`` holds the two together.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real
from pathlib import Path

from birdclef import layout

WINDOW_S = 5  # the competition scores 5 s windows of each soundscape
BIRDNET_SEGMENT_S = 3.0  # what BirdNET v2.4 takes
BIRDNET_EMBEDDING_DIM = 1024  # BirdNET v2.4: the tensor before its classifier
HEADS = ("linear", "conv1x1", "sed")
LOSSES = ("bce", "focal", "ce")
NORMALIZATIONS = ("none", "minmax", "standard")
BLEND_SPACES = ("prob", "rank", "logit")
FIT_METHODS = ("hill_climb", "coordinate", "equal")
WEIGHT_TOL = 1e-6
TIMM_NAMES_FILE = Path(__file__).with_name("timm_models.txt")


class ConfigError(ValueError):
    """A config the workflow cannot run, with the key that is wrong in the message."""


def check_keys(cls: type, values: Mapping, section: str) -> None:
    """Raise ValueError naming ``section`` and every key of ``values`` that is not a field of ``cls``."""
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {section} keys: {sorted(unknown)}")


# --- Data ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoConfig:
    """The knobs of the demo dataset; the ``demo:`` section of config.yaml."""

    seed: int = 2026
    n_species: int = 12
    clips_per_species: tuple[int, int] = (8, 20)  # rarest and commonest class
    clip_seconds: tuple[float, float] = (3.0, 40.0)
    n_train_soundscapes: int = 12
    n_test_soundscapes: int = 8
    n_validation_soundscapes: int = 12
    soundscape_seconds: int = 60
    species_per_soundscape: tuple[int, int] = (1, 4)
    secondary_prob: float = 0.25
    voice_prob: float = 0.15
    focal_snr_db: tuple[float, float] = (0.0, 20.0)
    soundscape_snr_db: tuple[float, float] = (-10.0, 5.0)
    n_duplicates: int = 8
    messy: bool = True

    @classmethod
    def from_dict(cls, d: Mapping) -> DemoConfig:
        """Build from a config mapping; lists become tuples, unknown keys are an error."""
        check_keys(cls, d, "demo config")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def __post_init__(self) -> None:
        for name in (
            "clips_per_species",
            "clip_seconds",
            "species_per_soundscape",
            "focal_snr_db",
            "soundscape_snr_db",
        ):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"demo.{name}: the first value ({lo}) must not exceed the second ({hi})")
        if self.species_per_soundscape[1] > self.n_species:
            raise ValueError(
                f"demo.species_per_soundscape: at most {self.species_per_soundscape[1]} species "
                f"per soundscape, but demo.n_species is {self.n_species}"
            )
        if self.soundscape_seconds % WINDOW_S:
            raise ValueError(f"demo.soundscape_seconds: {self.soundscape_seconds} is not a multiple of {WINDOW_S}")


@dataclass(frozen=True)
class FilterConfig:
    """The ``quality_filter:`` section of config.yaml."""

    min_own_confidence: float = 0.1  # known species: drop when its own best confidence is below
    min_active_fraction: float = 0.05  # unknown species: drop when fewer segments are active
    min_clips_per_class: int = 5  # never keep fewer clips of a class than this (when it has them)
    energy_min_hz: float = 2000.0  # the energy fallback looks above this frequency
    activity_margin_db: float = 3.0  # a segment is active when its spectrum bumps this far above a noise fit
    n_best_windows: int = 3  # best window starts kept per clip
    window_s: float = 5.0  # length of the windows that later stages cut (chunks.chunk_s, not a key of its own)
    birdnet_secondary: bool = False  # add species BirdNET hears with confidence as soft secondary labels
    secondary_min_confidence: float = 0.8  # ... at or above this confidence

    @classmethod
    def from_dict(cls, values: Mapping) -> FilterConfig:
        return cls(**values)


@dataclass(frozen=True)
class ChunkConfig:
    """The ``chunks:`` section of config.yaml."""

    chunk_s: float = 5.0  # the window a model is trained on and predicts
    context_s: float = 0.0  # audio added on each side of the window (e.g. 2.5)
    chunks_per_clip: int = 3  # training chunks cut per clip, at its best windows
    max_overlap: float = 0.5  # share of chunk_s two chunks of one clip may overlap
    rescued_weight: float = 0.5  # sample weight of clips kept only to meet the class minimum

    @classmethod
    def from_dict(cls, values: Mapping) -> ChunkConfig:
        return cls(**values)

    @property
    def seconds(self) -> float:
        return self.chunk_s + 2 * self.context_s


@dataclass(frozen=True)
class MelConfig:
    """The ``mel:`` section of config.yaml."""

    sample_rate: int = 32_000
    n_fft: int = 1024
    hop_length: int = 500
    n_mels: int = 128
    f_min: float = 40.0
    f_max: float = 15_000.0
    power: float = 2.0
    top_db: float | None = 80.0
    normalization: str = "minmax"  # per chunk: none, minmax (to 0..1) or standard (zero mean, unit variance)

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"mel.normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(
                f"mel.f_min < mel.f_max <= sample_rate / 2 is needed: {self.f_min}, {self.f_max}, {self.sample_rate}"
            )

    @classmethod
    def from_dict(cls, values: Mapping) -> MelConfig:
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def hash(self) -> str:
        """Short stable hash of every parameter; a cache built with other parameters has another hash."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:16]

    def n_frames(self, n_samples: int) -> int:
        """Frames of a mel of ``n_samples`` samples (torchaudio's centred STFT)."""
        return n_samples // self.hop_length + 1


@dataclass(frozen=True)
class EmbeddingConfig:
    """The ``embeddings:`` section: how BirdNET embeds one window of ``chunks.chunk_s`` seconds.

    BirdNET takes 3 s; each window is embedded as the segments starting ``segment_starts``
    seconds into it (the window itself, without ``chunks.context_s``), and they combine
    as the mean embedding and the maximum logit per BirdNET class (a call in any segment
    counts). Training, pseudo-labels, validation and inference all use this one layout.
    """

    segment_starts: tuple[float, ...] = (0.0, 1.0, 2.0)

    def __post_init__(self) -> None:
        starts = tuple(float(s) for s in self.segment_starts)
        if not starts or any(s < 0 for s in starts) or list(starts) != sorted(set(starts)):
            raise ValueError(f"embeddings.segment_starts must be increasing seconds >= 0, got {list(starts)}")
        object.__setattr__(self, "segment_starts", starts)

    @classmethod
    def from_dict(cls, values: Mapping) -> EmbeddingConfig:
        check_keys(cls, values, "embeddings")
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps({"segment_starts": list(self.segment_starts), "segment_s": BIRDNET_SEGMENT_S})


@dataclass(frozen=True)
class ValidationBuildConfig:
    """The ``validation.build:`` section: labelled soundscapes built from held-out clips when the data has none."""

    background_share: float = 0.2  # share of train_soundscapes set aside as backgrounds (birdclef.backgrounds)
    soundscape_seconds: int = 60  # length of a built soundscape
    fill_share: float = 0.67  # share of slots that hold a clip; the rest are negatives for every class
    snr_db: tuple[float, float] = (-5.0, 10.0)  # clip RMS against the background's over its slot, drawn uniformly
    background_gain_db: float = 0.0  # gain of the backgrounds; sets the files' level, not the SNR
    # a background window is used only when BirdNET hears no taxonomy species in it at this confidence
    background_max_confidence: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "snr_db", tuple(self.snr_db))
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ValueError(f"validation.build.snr_db must be [low, high] with low <= high, got {list(self.snr_db)}")
        if not 0 <= self.background_share < 1:
            raise ValueError(f"validation.build.background_share must be in [0, 1), got {self.background_share}")
        if not 0 < self.fill_share <= 1:
            raise ValueError(f"validation.build.fill_share must be in (0, 1], got {self.fill_share}")
        if not 0 < self.background_max_confidence <= 1:
            raise ValueError(
                f"validation.build.background_max_confidence must be in (0, 1], got {self.background_max_confidence}"
            )
        if not _is_int(self.soundscape_seconds) or self.soundscape_seconds < WINDOW_S:
            raise ValueError(
                f"validation.build.soundscape_seconds must be an integer >= {WINDOW_S}, got {self.soundscape_seconds!r}"
            )

    @classmethod
    def from_dict(cls, values: Mapping) -> ValidationBuildConfig:
        check_keys(cls, values, "validation.build")
        return cls(**values)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# --- Models and training ----------------------------------------------------------------
@functools.cache
def timm_model_names() -> frozenset[str]:
    """Every architecture name of the pinned timm, from a list made from timm itself (tests keep it current).

    Checking names against a file keeps timm (and torch) out of every Snakemake start.
    """
    return frozenset(TIMM_NAMES_FILE.read_text().split())


def is_timm_model(name: str) -> bool:
    """Whether ``name`` (optionally with a pretrained tag, ``efficientnet_b0.ra_in1k``) is a timm architecture."""
    return name.split(".", 1)[0] in timm_model_names()


HUB_PREFIX = "hf-hub:"  # timm's prefix for weights on the Hugging Face Hub: hf-hub:<owner>/<repo>[@<revision>]


def is_hub_name(pretrained: str | None) -> bool:
    """Whether a ``pretrained`` value names Hugging Face Hub weights (else it is a local file, or None)."""
    return bool(pretrained) and pretrained.startswith(HUB_PREFIX)


def hub_repo(pretrained: str) -> tuple[str, str | None]:
    """The repo id and revision (None: main) of ``hf-hub:<owner>/<repo>[@<revision>]``, split as timm splits it."""
    repo, at, revision = pretrained.removeprefix(HUB_PREFIX).partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or (at and not re.fullmatch(r"[\w./-]+", revision)):
        raise ValueError(f"{pretrained} is not {HUB_PREFIX}<owner>/<repo> or {HUB_PREFIX}<owner>/<repo>@<revision>")
    return repo, revision or None


def hub_architecture(repo: str) -> str | None:
    """The architecture a repo id names: timm's own repos are ``timm/<architecture>.<tag>``.

    Any other repo says so only in its config.json, which is read when the weights are fetched.
    """
    owner, name = repo.split("/", 1)
    return name.split(".", 1)[0] if owner == "timm" else None


def pretrained_problem(pretrained: str | None, backbone: str) -> str | None:
    """What is wrong with a ``pretrained`` value for ``backbone``, as far as it can be told without network."""
    if not pretrained:
        return None
    if not is_hub_name(pretrained):
        return None if Path(pretrained).is_file() else f"{pretrained} is not a file (nor a {HUB_PREFIX}<repo> name)"
    try:
        architecture = hub_architecture(hub_repo(pretrained)[0])
    except ValueError as err:
        return str(err)
    if architecture is not None and architecture != backbone.split(".", 1)[0]:
        return f"{pretrained} holds {architecture} weights, but backbone is {backbone}"
    return None


# What each model kind is trained on and which heads it has. The torch side (how a kind
# trains, predicts and exports) is registered in ``birdclef.kinds``; the rules only need
# to know which caches a model reads, so that stays here, stdlib only.
KIND_HEADS = {"cnn": HEADS, "birdnet_head": ("linear", "mlp")}
KIND_INPUT = {"cnn": "mels", "birdnet_head": "embeddings"}


@dataclass(frozen=True)
class ModelConfig:
    """One named entry of ``models:`` in config.yaml (its ``train:`` and ``embedding_distill:`` go to TrainConfig)."""

    kind: str = "cnn"  # cnn: a timm backbone on log-mels; birdnet_head: a head on BirdNET embeddings
    backbone: str = "efficientnet_b0"  # any timm model name (cnn only)
    head: str | None = None  # cnn: linear, conv1x1 or sed (default); birdnet_head: linear or mlp (default)
    hidden: int = 512  # birdnet_head mlp: hidden units
    dropout: float = 0.2
    # a local weights file, or hf-hub:<repo> (timm's name for Hugging Face Hub weights); None trains from scratch
    pretrained: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KIND_HEADS:
            raise ValueError(f"kind must be one of {tuple(KIND_HEADS)}, got {self.kind!r}")
        heads = KIND_HEADS[self.kind]
        if self.head is None:
            object.__setattr__(self, "head", heads[-1])
        if self.head not in heads:
            raise ValueError(f"head must be one of {heads} for kind {self.kind}, got {self.head!r}")
        if self.kind == "cnn" and not is_timm_model(self.backbone):
            raise ValueError(f"backbone: {self.backbone!r} is not a timm model name")
        if problem := pretrained_problem(self.pretrained, self.backbone):
            raise ValueError(f"pretrained: {problem}")

    @classmethod
    def from_dict(cls, values: Mapping) -> ModelConfig:
        return cls(**values)

    @property
    def input(self) -> str:
        """The cache this model predicts from: "mels" or "embeddings"."""
        return KIND_INPUT[self.kind]


@dataclass(frozen=True)
class AugmentConfig:
    """The ``augment:`` section of a training config."""

    mixup_p: float = 0.5
    mixup_alpha: float = 0.5  # Beta(alpha, alpha) for the mixing weight
    cutmix_p: float = 0.0
    label_rule: str = "max"  # mix or max
    mask_p: float = 0.5
    freq_masks: int = 2
    freq_mask_max: int = 12  # mel bands per mask, at most
    time_masks: int = 2
    time_mask_max: int = 30  # frames per mask, at most
    gain_p: float = 0.3
    gain_range: float = 0.2  # factor in 1 +- gain_range

    def __post_init__(self) -> None:
        if self.label_rule not in ("mix", "max"):
            raise ValueError(f"augment.label_rule must be mix or max, got {self.label_rule!r}")

    @classmethod
    def from_dict(cls, values: Mapping) -> AugmentConfig:
        check_keys(cls, values, "train.augment")
        return cls(**values)


@dataclass(frozen=True)
class EmbeddingDistillConfig:
    """A CNN's ``embedding_distill:``: learn BirdNET's embedding of each window beside the classes."""

    weight: float = 0.0  # weight of the cosine loss against BirdNET's embedding; 0: off
    soundscape_share: float = 0.3  # share of each epoch's samples from soundscape windows (embedding loss only)

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"embedding_distill.weight must be >= 0, got {self.weight}")
        if not 0 <= self.soundscape_share < 1:
            raise ValueError(f"embedding_distill.soundscape_share must be in [0, 1), got {self.soundscape_share}")

    @classmethod
    def from_dict(cls, values: Mapping) -> EmbeddingDistillConfig:
        check_keys(cls, values, "embedding_distill")
        return cls(**values)


@dataclass(frozen=True)
class TrainConfig:
    """The ``train:`` section of config.yaml."""

    epochs: int = 24
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 1.0
    grad_clip: float = 5.0
    loss: str = "bce"
    focal_gamma: float = 2.0
    secondary_target: float = 0.5
    seed: int = 0
    num_workers: int = 0
    soup_epochs: int = 0  # > 0: the model kept is the average of the last soup_epochs epochs' weights
    drop_path: float = 0.0  # stochastic depth: the rate at which a CNN's residual blocks are skipped in training
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    embedding_distill: EmbeddingDistillConfig = field(default_factory=EmbeddingDistillConfig)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"train.loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0 <= self.soup_epochs <= self.epochs:
            raise ValueError(f"train.soup_epochs must be between 0 and epochs ({self.epochs}), got {self.soup_epochs}")
        if not 0 <= self.drop_path < 1:
            raise ValueError(f"train.drop_path must be in [0, 1), got {self.drop_path}")

    @classmethod
    def from_dict(cls, values: Mapping) -> TrainConfig:
        values = dict(values)
        check_keys(cls, values, "train")
        augment = AugmentConfig.from_dict(values.pop("augment", {}))
        distill = EmbeddingDistillConfig.from_dict(values.pop("embedding_distill", {}))
        return cls(**values, augment=augment, embedding_distill=distill)

    def to_dict(self) -> dict:
        return asdict(self)


def train_settings(train: Mapping, model_entry: Mapping) -> dict:
    """The train section with a model entry's own ``train:`` keys laid over it (``augment`` key by key).

    An entry's ``embedding_distill:`` is a train setting of that model too (its projection is training-only).
    """
    override = dict(model_entry.get("train") or {})
    if "embedding_distill" in model_entry:
        override["embedding_distill"] = {**override.get("embedding_distill", {}), **model_entry["embedding_distill"]}
    merged = {**train, **override}
    for nested in ("augment", "embedding_distill"):
        merged[nested] = {**train.get(nested, {}), **override.get(nested, {})}
    return merged


@dataclass(frozen=True)
class SoundscapeMixupConfig:
    """``distill.soundscape_mixup``: each labelled chunk blended with a random pseudo-labelled window (2025 winner).

    Every soundscape window the student may see is eligible, with its soft label; ``floor`` zeroes the
    soft labels below it in every pseudo-labelled window a student learns from (mixed or drawn).
    """

    p: float = 0.0  # chance that a labelled chunk is blended with a window; 0: off
    alpha: float = 1.0  # the chunk's share of the blend ~ Beta(alpha, alpha)
    label_rule: str = "mix"  # mix (blend the targets too; beat max on NIPS4B) or max (each class at the larger)
    floor: float = 0.0  # soft labels below this are zeroed

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ValueError(f"distill.soundscape_mixup.p must be in [0, 1], got {self.p}")
        if self.alpha <= 0:
            raise ValueError(f"distill.soundscape_mixup.alpha must be > 0, got {self.alpha}")
        if self.label_rule not in ("mix", "max"):
            raise ValueError(f"distill.soundscape_mixup.label_rule must be mix or max, got {self.label_rule!r}")
        if not 0 <= self.floor < 1:
            raise ValueError(f"distill.soundscape_mixup.floor must be in [0, 1), got {self.floor}")

    @classmethod
    def from_dict(cls, values: Mapping) -> SoundscapeMixupConfig:
        check_keys(cls, values, "distill.soundscape_mixup")
        return cls(**values)


@dataclass(frozen=True)
class DistillConfig:
    """The ``distill:`` section of config.yaml."""

    distill_weight: float = 0.25  # share of the teachers' soft prediction in a labelled chunk's target
    temperature: float = 1.0  # above 1 softens the teachers' predictions
    pseudo_share: float = 0.3  # share of each epoch's samples drawn from the kept pseudo-labelled windows
    soundscape_mixup: SoundscapeMixupConfig = field(default_factory=SoundscapeMixupConfig)
    drop_path: float | None = None  # the students' stochastic depth, in place of their train.drop_path; None: theirs

    def __post_init__(self) -> None:
        if not 0 <= self.distill_weight <= 1:
            raise ValueError(f"distill.distill_weight must be in [0, 1], got {self.distill_weight}")
        if self.temperature <= 0:
            raise ValueError(f"distill.temperature must be > 0, got {self.temperature}")
        if not 0 <= self.pseudo_share < 1:
            raise ValueError(f"distill.pseudo_share must be in [0, 1), got {self.pseudo_share}")
        if self.drop_path is not None and not 0 <= self.drop_path < 1:
            raise ValueError(f"distill.drop_path must be null or in [0, 1), got {self.drop_path}")

    @classmethod
    def from_dict(cls, values: Mapping) -> DistillConfig:
        values = dict(values)
        check_keys(cls, values, "distill")
        mixup = SoundscapeMixupConfig.from_dict(values.pop("soundscape_mixup", {}))
        return cls(**values, soundscape_mixup=mixup)

    def to_dict(self) -> dict:
        return asdict(self)


# --- Ensemble and post-processing -------------------------------------------------------
def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class EnsembleConfig:
    """The ``ensemble:`` section of config.yaml (``members`` is resolved into the plan)."""

    method: str = "hill_climb"  # one of FIT_METHODS
    space: str = "prob"  # one of BLEND_SPACES
    n_iter: int = 50  # hill_climb: most additions; coordinate: most sweeps per step size
    cv_folds: int = 5  # folds by soundscape for the cross-validated score (fewer if fewer soundscapes)
    seed: int = 0  # shuffles soundscapes into folds

    def __post_init__(self) -> None:
        if self.method not in FIT_METHODS:
            raise ValueError(f"ensemble.method must be one of {FIT_METHODS}, got {self.method!r}")
        if self.space not in BLEND_SPACES:
            raise ValueError(f"ensemble.space must be one of {BLEND_SPACES}, got {self.space!r}")
        if not _is_int(self.n_iter) or self.n_iter < 1:
            raise ValueError(f"ensemble.n_iter must be an integer >= 1, got {self.n_iter!r}")
        if not _is_int(self.cv_folds) or self.cv_folds < 2:
            raise ValueError(f"ensemble.cv_folds must be an integer >= 2, got {self.cv_folds!r}")
        if not _is_int(self.seed):
            raise ValueError(f"ensemble.seed must be an integer, got {self.seed!r}")

    @classmethod
    def from_dict(cls, values: Mapping) -> EnsembleConfig:
        check_keys(cls, values, "ensemble")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


def weights_summing_to_one(value: object, n: int, key: str) -> tuple[float, ...]:
    """``value`` as a tuple of n non-negative floats summing to 1, or a ValueError naming ``postprocess.<key>``."""
    problem = f"postprocess.{key} must be {n} non-negative weights summing to 1, got {value!r}"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) and not hasattr(value, "__array__"):
        raise ValueError(problem)
    try:
        weights = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(problem) from err
    if len(weights) != n or not all(math.isfinite(w) and w >= 0 for w in weights) or abs(sum(weights) - 1) > WEIGHT_TOL:
        raise ValueError(problem)
    return weights


@dataclass(frozen=True)
class PostprocessConfig:
    """The ``postprocess:`` section of config.yaml."""

    smoothing: tuple[float, float, float] | None = (0.2, 0.6, 0.2)  # previous, self, next window; None: off
    smoothing_edge: tuple[float, float] = (0.9, 0.1)  # self, the one neighbour: first and last window of a file
    low_rank_power: float = 1.0  # power for the classes outside a file's top-k; 1: off
    low_rank_top_k: int = 3  # classes per file, by their highest probability there, left as they are
    file_max_weight: float = 0.0  # a in p * ((1 - a) + a * filemax); 0: off

    def __post_init__(self) -> None:
        # YAML gives lists; stored as tuples so the config stays hashable and immutable.
        if self.smoothing is not None:
            object.__setattr__(self, "smoothing", weights_summing_to_one(self.smoothing, 3, "smoothing"))
        object.__setattr__(self, "smoothing_edge", weights_summing_to_one(self.smoothing_edge, 2, "smoothing_edge"))
        power = self.low_rank_power
        if isinstance(power, bool) or not isinstance(power, Real) or not (math.isfinite(power) and power > 0):
            raise ValueError(f"postprocess.low_rank_power must be > 0, got {power!r}")
        if not _is_int(self.low_rank_top_k) or self.low_rank_top_k < 1:
            raise ValueError(f"postprocess.low_rank_top_k must be an integer >= 1, got {self.low_rank_top_k!r}")
        a = self.file_max_weight
        if isinstance(a, bool) or not isinstance(a, Real) or not 0 <= a <= 1:
            raise ValueError(f"postprocess.file_max_weight must be in [0, 1], got {a!r}")

    @classmethod
    def from_dict(cls, values: Mapping) -> PostprocessConfig:
        check_keys(cls, values, "postprocess")
        return cls(**values)

    def to_dict(self) -> dict:
        d = asdict(self)
        # Lists, as config.yaml and JSON write them.
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# --- Pseudo-label rounds -----------------------------------------------------------------
@dataclass(frozen=True)
class RoundSettings:
    """One pseudo-label round's own settings (``pseudo_label.per_round``, over the sections' values).

    ``power`` and ``min_max_prob`` are pseudo_label's (the labels, and which windows the old
    sampling keeps); ``floor`` and ``mixup_p`` are distill.soundscape_mixup's (what the round's
    students do with them). Round n's job and students read round n's settings only, so a
    change to round n reruns rounds n and later, never the rounds before it.
    """

    power: float = 1.0
    min_max_prob: float = 0.5
    floor: float = 0.0
    mixup_p: float = 0.0

    def __post_init__(self) -> None:
        if self.power <= 0:
            raise ValueError(f"power must be > 0, got {self.power}")
        for key in ("min_max_prob", "mixup_p"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"{key} must be in [0, 1], got {getattr(self, key)}")
        if not 0 <= self.floor < 1:
            raise ValueError(f"floor must be in [0, 1), got {self.floor}")


def round_settings(pseudo: Mapping, distill: DistillConfig) -> list[RoundSettings]:
    """Every round's settings: the sections' values, with ``pseudo_label.per_round[n - 1]`` laid over round n's."""
    per_round = list(pseudo.get("per_round") or [])
    if len(per_round) > pseudo["rounds"]:
        raise ConfigError(
            f"Invalid config: pseudo_label.per_round has {len(per_round)} entries for {pseudo['rounds']} rounds"
        )
    base = {
        "power": pseudo["power"],
        "min_max_prob": pseudo["min_max_prob"],
        "floor": distill.soundscape_mixup.floor,
        "mixup_p": distill.soundscape_mixup.p,
    }
    rounds = []
    for n in range(1, pseudo["rounds"] + 1):
        entry = per_round[n - 1] if n <= len(per_round) else {}
        try:
            check_keys(RoundSettings, entry, "round")
            rounds.append(RoundSettings(**{**base, **entry}))
        except (ValueError, TypeError) as err:
            raise ConfigError(f"Invalid config: pseudo_label.per_round[{n - 1}]: {err}") from None
    return rounds


# --- The plan -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedModel:
    """A named model: its architecture and its train section merged with the entry's own overrides."""

    model: ModelConfig
    train: TrainConfig

    def params(self) -> tuple[dict, dict]:
        """Plain dicts for a rule's params (a changed knob reruns exactly this model's jobs)."""
        return asdict(self.model), self.train.to_dict()

    @property
    def input(self) -> str:
        """The cache it predicts from: "mels" or "embeddings"."""
        return self.model.input

    @property
    def needs_embeddings(self) -> bool:
        """Whether training reads the BirdNET embedding cache (as its input, or as a distillation target)."""
        return self.input == "embeddings" or self.train.embedding_distill.weight > 0

    def embedding_sets(self, student: bool) -> list[str]:
        """The embedding caches ("train", "soundscapes") its training reads, as a teacher or as a student.

        A birdnet_head student reads its pseudo-labelled windows' embeddings; embedding
        distillation reads the soundscape windows it draws and those a student's pseudo-labels pick.
        """
        if not self.needs_embeddings:
            return []
        distill = self.train.embedding_distill
        soundscapes = student or (distill.weight > 0 and distill.soundscape_share > 0)
        return ["train", "soundscapes"] if soundscapes else ["train"]


@dataclass(frozen=True)
class Plan:
    """Everything the rules need to know about a config, resolved and cross-checked once."""

    demo: DemoConfig
    mel: MelConfig
    chunks: ChunkConfig
    embeddings: EmbeddingConfig
    models: dict[str, ResolvedModel]
    folds: list[int]
    teachers: list[str]
    students: list[str]
    student_stages: list[str]  # student, student2, ... one per pseudo-label round
    pseudo_teachers: list[str]  # round 1's pseudo-labellers (names under models)
    pseudo_teacher_weights: dict[str, float]
    distill: DistillConfig
    ensemble: EnsembleConfig
    ensemble_members: list[str]  # <stage>/<name>
    postprocess: PostprocessConfig
    validation_build: ValidationBuildConfig = field(default_factory=ValidationBuildConfig)
    round_settings: list[RoundSettings] = field(default_factory=lambda: [RoundSettings()])
    birdnet_weight: float = 1.0  # pseudo_label.birdnet_weight

    @property
    def rounds(self) -> int:
        return len(self.student_stages)

    def pseudo_params(self, round_: int) -> dict:
        """What round n's pseudo_label job depends on: BirdNET's weight and the round's power and threshold."""
        r = self.round_settings[round_ - 1]
        return {"birdnet_weight": self.birdnet_weight, "power": r.power, "min_max_prob": r.min_max_prob}

    def student_distill(self, round_: int) -> dict:
        """Round n's distill section: soundscape_mixup's p and floor are the round's own."""
        d = self.distill.to_dict()
        r = self.round_settings[round_ - 1]
        d["soundscape_mixup"] = {**d["soundscape_mixup"], "p": r.mixup_p, "floor": r.floor}
        return d

    def trains_on_soundscapes(self, stage: str, name: str) -> bool:
        """Whether a stage's model learns from soundscape windows: every student, and embedding-distilled teachers.

        Such a model's fold k never sees the soundscapes of soundscape fold k (``folds.soundscape_fold``), and
        labels only those: so no window's pseudo-label comes from a model that trained on it.
        """
        distill = self.models[name].train.embedding_distill
        return stage != "teacher" or (distill.weight > 0 and distill.soundscape_share > 0)

    def student_train(self, name: str) -> dict:
        """A student's train settings: the model's, with ``distill.drop_path`` in place of its own when set."""
        train = self.models[name].train.to_dict()
        if self.distill.drop_path is not None:
            train["drop_path"] = self.distill.drop_path
        return train

    @property
    def trained_models(self) -> list[str]:
        """Every model name that some stage trains."""
        return list(dict.fromkeys([*self.teachers, *self.students]))

    @property
    def uses_embeddings(self) -> bool:
        """Whether any trained model reads the BirdNET embedding cache."""
        return any(self.models[name].needs_embeddings for name in self.trained_models)

    @property
    def final_student_stage(self) -> str:
        return self.student_stages[-1]

    def stage_models(self, stage: str) -> list[str]:
        """The model names trained in a stage: the teachers, or every round's students."""
        return self.teachers if stage == "teacher" else self.students

    def round_teachers(self, round_: int) -> tuple[str, list[str]]:
        """The stage and model names that pseudo-label and distil in a round (round n > 1: round n-1's students)."""
        if round_ == 1:
            return "teacher", self.pseudo_teachers
        return layout.student_stage(round_ - 1), self.students

    def round_teacher_weights(self, round_: int) -> dict[str, float]:
        """pseudo_label.teacher_weights name round 1's teachers; later rounds' teachers (students) weigh alike."""
        return self.pseudo_teacher_weights if round_ == 1 else {}


def _section(cls: type, values: Mapping, key: str):
    try:
        return cls.from_dict(values)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"Invalid config: {key}: {err}") from None


def resolve(config: Mapping) -> Plan:
    """The plan of a schema-validated config; a cross-check that fails raises ConfigError naming the key."""
    birdnet = config["birdnet"]
    if (birdnet["lat"] is None) != (birdnet["lon"] is None) or (birdnet["week"] is not None and birdnet["lat"] is None):
        raise ConfigError("Invalid config: birdnet.lat and birdnet.lon go together (and birdnet.week needs them)")

    models = {}
    for name, entry in config["models"].items():
        arch = {k: v for k, v in entry.items() if k not in ("train", "embedding_distill")}  # those are train settings
        if problem := pretrained_problem(entry.get("pretrained"), entry.get("backbone", "")):
            raise ConfigError(f"Invalid config: models.{name}.pretrained: {problem}")
        model = _section(ModelConfig, arch, f"models.{name}")
        train = _section(TrainConfig, train_settings(config["train"], entry), f"models.{name}")
        if model.kind != "cnn" and train.embedding_distill.weight > 0:
            raise ConfigError(f"Invalid config: models.{name}: embedding_distill is for CNNs, not kind {model.kind}")
        models[name] = ResolvedModel(model, train)

    pseudo = config["pseudo_label"]
    teachers, students = list(config["teachers"]), list(config["students"])
    pseudo_teachers = list(pseudo["teachers"] or teachers)
    for key, names in [
        ("teachers", teachers),
        ("pseudo_label", [*pseudo_teachers, *pseudo["teacher_weights"]]),
        ("students", students),
    ]:
        for name in names:
            if name not in models:
                raise ConfigError(f"Invalid config: {key}: {name!r} is not a name under models ({', '.join(models)})")

    student_stages = [layout.student_stage(r) for r in range(1, pseudo["rounds"] + 1)]
    distill = _section(DistillConfig, config["distill"], "distill")
    members = list(config["ensemble"]["members"] or layout.default_members(teachers, students, student_stages[-1]))
    plan = Plan(
        demo=_section(DemoConfig, config["demo"], "demo"),
        mel=_section(MelConfig, config["mel"], "mel"),
        chunks=_section(ChunkConfig, config["chunks"], "chunks"),
        embeddings=_section(EmbeddingConfig, config["embeddings"], "embeddings"),
        models=models,
        folds=list(range(config["folds"]["n_folds"])),
        teachers=teachers,
        students=students,
        student_stages=student_stages,
        pseudo_teachers=pseudo_teachers,
        pseudo_teacher_weights=dict(pseudo["teacher_weights"]),
        distill=distill,
        ensemble=_section(EnsembleConfig, {k: v for k, v in config["ensemble"].items() if k != "members"}, "ensemble"),
        ensemble_members=members,
        postprocess=_section(PostprocessConfig, config["postprocess"], "postprocess"),
        validation_build=_section(ValidationBuildConfig, config["validation"].get("build", {}), "validation.build"),
        round_settings=round_settings(pseudo, distill),
        birdnet_weight=pseudo["birdnet_weight"],
    )
    last_end = plan.embeddings.segment_starts[-1] + BIRDNET_SEGMENT_S
    if last_end > plan.chunks.chunk_s + 1e-9:
        raise ConfigError(
            f"Invalid config: embeddings.segment_starts: the last segment ends at {last_end:g} s, "
            f"after the window's {plan.chunks.chunk_s:g} s (chunks.chunk_s)"
        )
    for member in members:
        try:
            stage, name = layout.parse_member(member)
        except ValueError as err:
            raise ConfigError(f"Invalid config: ensemble.members: {err}") from None
        if stage not in ["teacher", *student_stages] or name not in plan.stage_models(stage):
            raise ConfigError(
                f"Invalid config: ensemble.members: {member!r} is not a trained model "
                f"(teachers: {teachers}, students: {students} in stages {student_stages})"
            )
    return plan
