"""The configuration layer: one source of defaults, one resolver, no torch, errors that name the key."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys

import pytest
import timm
import yaml
from snakemake.utils import validate

from birdclef import settings
from birdclef.settings import ConfigError, resolve

from conftest import REPO

SCHEMA_PATH = REPO / "rules" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())

# Each dataclass and the schema node whose properties it mirrors.
SECTIONS = {
    settings.DemoConfig: ["demo"],
    settings.FilterConfig: ["quality_filter"],
    settings.ChunkConfig: ["chunks"],
    settings.MelConfig: ["mel"],
    settings.TrainConfig: ["train"],
    settings.AugmentConfig: ["train", "augment"],
    settings.EmbeddingDistillConfig: ["train", "embedding_distill"],
    settings.EmbeddingConfig: ["embeddings"],
    settings.DistillConfig: ["distill"],
    settings.SoundscapeMixupConfig: ["distill", "soundscape_mixup"],
    settings.EnsembleConfig: ["ensemble"],
    settings.PostprocessConfig: ["postprocess"],
    settings.ModelConfig: ["models", "*"],
    settings.ValidationBuildConfig: ["validation", "build"],
}
NOT_IN_SCHEMA = {(settings.FilterConfig, "window_s")}  # comes from chunks.chunk_s
# Keys the plan resolves (members), or that are sections of their own (augment) or merged in (an entry's train).
ONLY_IN_SCHEMA = {
    "ensemble": {"members"},
    "models.*": {"train", "embedding_distill"},
    "train": {"augment", "embedding_distill"},
    "distill": {"soundscape_mixup"},
}
NESTED = {"augment", "embedding_distill", "soundscape_mixup"}  # sections of their own, checked on their own


def schema_node(path: list[str]) -> dict:
    node = SCHEMA
    for key in path:
        node = node["additionalProperties"] if key == "*" else node["properties"][key]
    return node


def plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("cls", list(SECTIONS), ids=lambda c: c.__name__)
def test_dataclass_defaults_are_the_schema_defaults(cls):
    path = SECTIONS[cls]
    props = schema_node(path)["properties"]
    fields = {f.name for f in dataclasses.fields(cls)} - {name for c, name in NOT_IN_SCHEMA if c is cls}
    assert fields - NESTED == set(props) - ONLY_IN_SCHEMA.get(".".join(path), set())
    for f in dataclasses.fields(cls):
        if f.name not in props or f.name in NESTED or "default" not in props[f.name]:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert plain(default) == props[f.name]["default"], f"{cls.__name__}.{f.name}: dataclass {default!r}"


def test_a_round_entry_takes_exactly_the_round_settings():
    items = SCHEMA["properties"]["pseudo_label"]["properties"]["per_round"]["items"]
    assert {f.name for f in dataclasses.fields(settings.RoundSettings)} == set(items["properties"])


def test_every_model_entry_key_but_the_backbone_and_head_has_a_schema_default():
    # the head's default depends on the kind (sed for a cnn, mlp for a birdnet_head)
    props = schema_node(["models", "*"])["properties"]
    assert {k for k, v in props.items() if "default" not in v} == {"backbone", "head", "train", "embedding_distill"}


def shipped() -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(cfg, str(SCHEMA_PATH))
    return cfg


def test_the_shipped_config_resolves_into_the_demo_plan():
    plan = resolve(shipped())
    assert plan.teachers == ["mobilenet_conv", "birdnet_mlp"] and plan.students == ["mobilenet_student"]
    assert plan.uses_embeddings and plan.models["birdnet_mlp"].input == "embeddings"
    assert plan.folds == list(range(shipped()["folds"]["n_folds"]))
    assert plan.student_stages == ["student"] and plan.final_student_stage == "student"
    assert plan.ensemble_members == ["teacher/mobilenet_conv", "teacher/birdnet_mlp", "student/mobilenet_student"]
    # an entry's own train mapping lies over the train section, key by key
    assert plan.models["regnety_sed"].train.lr == 0.005
    assert plan.models["mobilenet_student"].train.epochs == 36
    assert (
        plan.models["mobilenet_student"].train.lr == plan.models["mobilenet_conv"].train.lr == shipped()["train"]["lr"]
    )
    assert plan.round_teachers(1) == ("teacher", plan.teachers)


def test_students_take_distill_drop_path_and_teachers_keep_their_own():
    cfg = shipped()
    cfg["train"]["drop_path"] = 0.05
    plan = resolve(cfg)
    name = plan.students[0]
    assert plan.student_train(name)["drop_path"] == plan.models[name].train.drop_path == 0.05  # null: the model's
    cfg["distill"]["drop_path"] = 0.15
    plan = resolve(cfg)
    assert plan.student_train(name)["drop_path"] == 0.15 and plan.models[name].train.drop_path == 0.05
    assert {k: v for k, v in plan.student_train(name).items() if k != "drop_path"} == {
        k: v for k, v in plan.models[name].train.to_dict().items() if k != "drop_path"
    }


def test_later_rounds_are_taught_by_the_students_before_them():
    cfg = shipped()
    cfg["pseudo_label"] |= {"rounds": 3, "teacher_weights": {"mobilenet_conv": 2.0}}
    plan = resolve(cfg)
    assert plan.student_stages == ["student", "student2", "student3"]
    assert plan.round_teachers(3) == ("student2", plan.students)
    assert plan.round_teacher_weights(1) == {"mobilenet_conv": 2.0} and plan.round_teacher_weights(2) == {}
    assert plan.ensemble_members[-1] == "student3/mobilenet_student"


def test_resolving_the_config_imports_neither_torch_nor_timm_nor_numpy():
    config_json = json.dumps(json.dumps(shipped()))
    code = (
        "import sys, json; sys.path.insert(0, 'workflow_scripts');"
        "from birdclef.settings import resolve;"
        f"plan = resolve(json.loads({config_json}));"
        "heavy = {'torch', 'timm', 'torchaudio', 'numpy', 'pandas', 'pyarrow'} & set(sys.modules);"
        "print(sorted(heavy)); assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_the_timm_name_list_is_the_pinned_timms_own():
    names = settings.timm_model_names()
    assert set(timm.list_models()) <= names
    assert all(timm.is_model(name) for name in names)
    assert settings.is_timm_model("efficientnet_b0.ra_in1k") and not settings.is_timm_model("resnet_999")


def patched(text: str) -> dict:
    """The shipped config with a YAML snippet laid over it, as ``--configfile`` does (section by section)."""
    cfg = copy.deepcopy(yaml.safe_load((REPO / "config.yaml").read_text()))
    for key, value in yaml.safe_load(text).items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


# Each refused config and the key its error must name; two of them also go through Snakemake (test_config.py).
BAD_CONFIGS = [
    ("demo:\n  n_species: abc\n", "n_species"),
    ("demo:\n  seeed: 1\n", "seeed"),
    ("demo:\n  clips_per_species: [9, 3]\n", "demo.clips_per_species"),
    ("teachers: [nope]\n", "teachers"),
    ("models:\n  m: {backbone: resnet_999}\n", "models.m"),
    ("models:\n  regnety_sed: {backbone: regnety_002, train: {epoch: 3}}\n", "models.regnety_sed"),
    ("train:\n  loss: hinge\n", "loss"),
    ("models:\n  a/b: {backbone: regnety_002}\n", "a/b"),
    ("models:\n  m: {backbone: efficientnet_b0, pretrained: 'hf-hub:timm/resnet18.a1_in1k'}\n", "models.m.pretrained"),
    ("models:\n  m: {backbone: efficientnet_b0, pretrained: no/such/weights.pth}\n", "models.m.pretrained"),
    ("postprocess:\n  smoothing: [0.3, 0.6, 0.3]\n", "postprocess.smoothing"),
    ("ensemble:\n  members: [student/mobilenet_conv]\n", "ensemble.members"),
    ("ensemble:\n  members: [student3/regnety_sed]\n", "ensemble.members"),
    ("ensemble:\n  members: [nonsense]\n", "members"),
    ("ensemble:\n  space: ranks\n", "space"),
    ("pseudo_label:\n  rounds: 0\n", "rounds"),
    ("pseudo_label:\n  teacher_weights: {nope: 1.0}\n", "pseudo_label"),
    ("students: [nope]\n", "students"),
    ("birdnet:\n  lat: 52.0\n", "birdnet.lat"),
    ("mel:\n  f_max: 20000.0\n", "mel.f_min"),
    ("distill:\n  pseudo_share: 1.0\n", "pseudo_share"),
    ("models:\n  b: {kind: birdnet_head, head: sed}\n", "models.b"),
    ("models:\n  b: {kind: cnn_head}\n", "kind"),
    ("models:\n  c: {head: sed}\n", "backbone"),
    ("models:\n  c: {backbone: regnety_002, embedding_distill: {weigth: 1}}\n", "models.c"),
    ("embeddings:\n  segment_starts: [0.0, 2.5]\n", "embeddings.segment_starts"),
    ("embeddings:\n  segment_starts: [1.0, 0.0]\n", "embeddings.segment_starts"),
    ("validation:\n  build: {snr_db: [10.0, -5.0]}\n", "validation.build.snr_db"),
    ("validation:\n  build: {background_max_confidence: 0}\n", "background_max_confidence"),
    ("validation:\n  build: {soundscape_seconds: 62}\n", "soundscape_seconds"),
    ("train:\n  drop_path: 1.0\n", "drop_path"),
    ("distill:\n  drop_path: -0.1\n", "drop_path"),
    ("distill:\n  soundscape_mixup: {p: 1.5}\n", "p"),
    ("distill:\n  soundscape_mixup: {label_rule: sum}\n", "label_rule"),
    ("distill:\n  soundscape_mixup: {alpa: 1.0}\n", "alpa"),
    ("pseudo_label:\n  rounds: 2\n  per_round: [{power: 1.0}, {power: 1.5}, {power: 2.0}]\n", "pseudo_label.per_round"),
    ("pseudo_label:\n  rounds: 2\n  per_round: [{}, {powr: 1.5}]\n", "powr"),
    ("pseudo_label:\n  per_round: [{power: 0}]\n", "power"),
]


@pytest.mark.parametrize(("text", "key"), BAD_CONFIGS, ids=[k for _, k in BAD_CONFIGS])
def test_a_bad_config_is_refused_naming_the_key(text, key):
    cfg = patched(text)
    with pytest.raises(Exception) as err:  # the schema's ValidationError, else the resolver's ConfigError
        validate(cfg, str(SCHEMA_PATH))
        resolve(cfg)
    assert key in str(err.value)
    if not isinstance(err.value, ConfigError):
        assert "validating" in str(err.value).lower() or type(err.value).__name__ == "ValidationError"


def test_each_round_takes_its_own_settings_over_the_sections():
    plan = resolve(
        patched(
            "pseudo_label:\n  rounds: 3\n  power: 1.2\n  per_round: [{mixup_p: 1.0}, {power: 1.54, floor: 0.05}]\n"
            "distill:\n  soundscape_mixup: {p: 0.5, alpha: 2.0}\n"
        )
    )
    assert [r.power for r in plan.round_settings] == [1.2, 1.54, 1.2]  # round 3: past the list, the section's
    assert [r.mixup_p for r in plan.round_settings] == [1.0, 0.5, 0.5]
    assert plan.pseudo_params(2) == {"birdnet_weight": 1.0, "power": 1.54, "min_max_prob": 0.5}
    assert plan.student_distill(1)["soundscape_mixup"] == {"p": 1.0, "alpha": 2.0, "label_rule": "mix", "floor": 0.0}
    assert plan.student_distill(2)["soundscape_mixup"] == {"p": 0.5, "alpha": 2.0, "label_rule": "mix", "floor": 0.05}


def test_students_and_embedding_distilled_teachers_label_out_of_fold():
    plan = resolve(patched("pseudo_label:\n  rounds: 2\n"))
    assert plan.trains_on_soundscapes("student", "mobilenet_student")
    assert not plan.trains_on_soundscapes("teacher", "mobilenet_conv")
    assert not plan.trains_on_soundscapes("teacher", "birdnet_mlp")
    emb = resolve(patched("models:\n  e: {backbone: regnety_002, embedding_distill: {weight: 1.0}}\nteachers: [e]\n"))
    assert emb.trains_on_soundscapes("teacher", "e")
