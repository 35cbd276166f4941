"""Pretrained weights from the Hugging Face Hub (hf-hub: names), offline, from a cache made here.

The cache is laid out as huggingface_hub keeps it (models--<owner>--<repo>/snapshots/<commit>/,
refs/main holding the commit), with a timm ``test_efficientnet`` exported by timm itself.
"""

import hashlib
import json
import logging
import runpy
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.constants
import pandas as pd
import pytest
import timm
import torch
from timm.models._hub import save_for_hf

from birdclef.folds import assign_folds
from birdclef.manifest import build_manifest
from birdclef.mel_shards import build_train_shard, write_shard
from birdclef.models import BirdModel
from birdclef.pretrained import FetchError, describe_pretrained, fetch_hub_weights, pinned_config
from birdclef.settings import ChunkConfig, ConfigError, MelConfig, ModelConfig, TrainConfig, pretrained_problem
from birdclef.train import train_fold

from conftest import REPO, run_snakemake

REPO_ID = "timm/test_efficientnet.r160_in1k"
NAME = f"hf-hub:{REPO_ID}"
REV = "0123456789abcdef0123456789abcdef01234567"
KEY = "models.m.pretrained"


def put_in_cache(cache: Path, repo_id: str, model: torch.nn.Module, weights: bool = True) -> Path:
    """``model`` exported by timm (config.json, model.safetensors) as snapshot REV of ``repo_id``, main -> REV."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REV
    save_for_hf(model, snapshot, safe_serialization=True)
    if not weights:
        (snapshot / "model.safetensors").unlink()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    return snapshot


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An offline Hugging Face cache holding REPO_ID; yields the model whose weights it holds."""
    cache = tmp_path / "hf" / "hub"
    source = timm.create_model("test_efficientnet")  # 3 input channels, as on the Hub
    put_in_cache(cache, REPO_ID, source)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these into constants when it is imported (timm imports it), so set them there too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return SimpleNamespace(cache=cache, source=source)


def assert_backbone_holds(backbone: torch.nn.Module, source: torch.nn.Module) -> None:
    # timm folds the RGB stem into one channel by summing it; every other weight is the file's
    torch.testing.assert_close(backbone.conv_stem.weight, source.conv_stem.weight.sum(dim=1, keepdim=True))
    stem = {"conv_stem.weight"}
    theirs = source.state_dict()
    for key, value in backbone.state_dict().items():
        if key not in stem:
            torch.testing.assert_close(value, theirs[key], msg=key)


def test_hub_weights_initialise_the_backbone_on_one_channel(hub):
    model = BirdModel(ModelConfig(backbone="test_efficientnet", head="sed", pretrained=NAME), n_classes=3).eval()
    assert_backbone_holds(model.backbone, hub.source)
    assert model(torch.randn(2, 1, 64, 96)).shape == (2, 3)


def test_fetching_records_the_snapshot_revision_and_training_loads_that_snapshot(hub, tmp_path):
    record = fetch_hub_weights(NAME, "test_efficientnet", key=KEY)
    assert record["revision"] == REV and record["requested_revision"] == "main"
    assert record["repo"] == REPO_ID and record["architecture"] == "test_efficientnet"
    assert record["files"] == ["config.json", "model.safetensors"]
    (tmp_path / "record.json").write_text(json.dumps(record))
    cfg = pinned_config(ModelConfig(backbone="test_efficientnet", pretrained=NAME), tmp_path / "record.json")
    assert cfg.pretrained == f"{NAME}@{REV}"
    assert_backbone_holds(BirdModel(cfg, n_classes=2).backbone, hub.source)
    assert describe_pretrained(NAME) == {"name": NAME, "repo": REPO_ID, "revision": REV}
    assert describe_pretrained(cfg.pretrained)["revision"] == REV


def test_rule_script_writes_the_record(hub, tmp_path):
    smk = SimpleNamespace(
        wildcards=SimpleNamespace(model="m"),
        params=SimpleNamespace(name=NAME, backbone="test_efficientnet"),
        output=SimpleNamespace(record=str(tmp_path / "results/pretrained/m.json")),
        log=[str(tmp_path / "m.log")],
    )
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        runpy.run_path(str(REPO / "workflow_scripts/fetch_pretrained.py"), init_globals={"snakemake": smk})
    finally:  # the script sets up logging for its job: leave the session's as it was
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = handlers, level
        logging.captureWarnings(False)
    assert json.loads(Path(smk.output.record).read_text())["revision"] == REV


@pytest.mark.parametrize(
    "name",
    [f"hf-hub:{REPO_ID}@v9", "hf-hub:timm/test_efficientnet.not_cached", "hf-hub:someone/not-cached"],
    ids=["no such revision", "no such repo", "another owner"],
)
def test_a_name_that_cannot_be_fetched_is_an_error_naming_the_key(hub, name):
    with pytest.raises(FetchError, match=rf"^{KEY}: cannot fetch {name}: HF_HUB_OFFLINE is set and it is not in"):
        fetch_hub_weights(name, "test_efficientnet", key=KEY)


def test_a_snapshot_without_its_weights_cannot_be_fetched(hub):
    put_in_cache(hub.cache, "timm/test_efficientnet.no_weights", timm.create_model("test_efficientnet"), weights=False)
    with pytest.raises(FetchError, match=rf"^{KEY}: cannot fetch hf-hub:timm/test_efficientnet.no_weights: "):
        fetch_hub_weights("hf-hub:timm/test_efficientnet.no_weights", "test_efficientnet", key=KEY)


def test_the_architecture_must_agree_with_the_backbone():
    # timm's own repos name their architecture: decided at resolve, without network
    assert "holds efficientnet_b0 weights" in pretrained_problem("hf-hub:timm/efficientnet_b0.ra_in1k", "resnet18")
    assert pretrained_problem("hf-hub:timm/efficientnet_b0.ra_in1k", "efficientnet_b0") is None
    assert pretrained_problem("hf-hub:timm/efficientnet_b0.ra_in1k@abc", "efficientnet_b0.ra4_e3600_r224_in1k") is None
    assert "not hf-hub:<owner>/<repo>" in pretrained_problem("hf-hub:efficientnet_b0", "efficientnet_b0")
    # another owner's repo says so only in its config.json
    assert pretrained_problem("hf-hub:someone/bird-net", "efficientnet_b0") is None
    with pytest.raises(ValueError, match="pretrained: hf-hub:timm/resnet18.a1_in1k holds resnet18"):
        ModelConfig(backbone="efficientnet_b0", pretrained="hf-hub:timm/resnet18.a1_in1k")


def test_another_owners_repo_of_another_architecture_is_refused_when_fetched(hub):
    put_in_cache(hub.cache, "someone/bird-net", timm.create_model("test_efficientnet"))
    with pytest.raises(ConfigError, match=rf"^{KEY}: hf-hub:someone/bird-net holds test_efficientnet weights"):
        fetch_hub_weights("hf-hub:someone/bird-net", "efficientnet_b0", key=KEY)
    assert fetch_hub_weights("hf-hub:someone/bird-net", "test_efficientnet", key=KEY)["revision"] == REV


def test_a_local_file_is_recorded_by_path_and_sha256(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"not really weights")
    described = describe_pretrained(str(path))
    assert described["sha256"] == hashlib.sha256(b"not really weights").hexdigest()
    assert described["path"] == str(path.resolve()) and described["bytes"] == 18
    assert describe_pretrained(None) is None


@pytest.fixture
def mel_cache(tiny_demo, tmp_path):
    clips = build_manifest(tiny_demo, workers=2).clips.assign(
        keep=True, best_windows=lambda d: [[0.0]] * len(d), quality_reason="kept", dup_group=lambda d: d["clip_id"]
    )
    classes = sorted(pd.read_csv(tiny_demo / "taxonomy.csv")["primary_label"])
    mel, chunks = MelConfig(n_mels=32), ChunkConfig(chunk_s=2.0, chunks_per_clip=1, max_overlap=0.0)
    write_shard(build_train_shard(clips, classes, mel, chunks, threads=2), tmp_path / "s.parquet", classes, mel, chunks)
    return tmp_path / "s.parquet", assign_folds(clips, n_folds=2, seed=0, by_author=False), mel


def test_metrics_json_names_the_weights_a_fold_started_from(hub, mel_cache, tmp_path):
    shard, folds, mel = mel_cache
    cfg = ModelConfig(backbone="test_efficientnet", head="linear", pretrained=f"{NAME}@{REV}")
    train = TrainConfig.from_dict({"epochs": 1, "batch_size": 8, "warmup_epochs": 0.0})
    train_fold([shard], folds, 0, cfg, train, mel, tmp_path / "f0")
    metrics = json.loads((tmp_path / "f0" / "metrics.json").read_text())
    assert metrics["pretrained"] == {"name": f"{NAME}@{REV}", "repo": REPO_ID, "revision": REV}


def test_the_dag_fetches_hub_weights_once_for_the_models_that_name_them(tmp_path):
    models = {
        "hubnet": {"backbone": "efficientnet_b0", "pretrained": "hf-hub:timm/efficientnet_b0.ra_in1k"},
        "scratch": {"backbone": "mobilenetv3_small_050"},
    }
    config = {"models": models, "teachers": ["hubnet", "scratch"], "students": ["hubnet"], "folds": {"n_folds": 2}}
    (tmp_path / "hub.yaml").write_text(json.dumps(config))
    out = run_snakemake(tmp_path, "-n", "--configfile", "hub.yaml").stdout
    jobs = out.split("\nrule ")[1:]
    fetch = [job for job in jobs if job.startswith("pretrained_weights:")]
    assert len(fetch) == 1 and "output: results/pretrained/hubnet.json" in fetch[0]
    training = [job for job in jobs if job.startswith(("train_teacher:", "train_student:"))]
    assert len(training) == 6
    for job in training:
        assert ("results/pretrained/hubnet.json" in job.split("\n")[1]) == ("model=hubnet" in job)
