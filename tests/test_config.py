"""The config is checked before anything runs, and a bad one names its key."""

import copy

import jsonschema
import pytest
import yaml
from snakemake.utils import validate

from conftest import REPO, run_snakemake

SCHEMA = str(REPO / "rules" / "schemas" / "config.schema.yaml")


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_shipped_config_is_valid(config):
    validate(config, SCHEMA)


def test_every_knob_in_config_yaml_has_a_description_and_default():
    schema = yaml.safe_load((REPO / "rules" / "schemas" / "config.schema.yaml").read_text())

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{path}{key} has no description"
            assert "default" in sub, f"{path}{key} has no default"
            walk(sub, f"{path}{key}.")

    walk(schema, "")


def test_defaults_fill_an_empty_config():
    cfg: dict = {}
    validate(cfg, SCHEMA)
    assert cfg["data_dir"] == "resources/demo"
    assert cfg["demo"]["n_species"] == 12
    assert cfg["manifest"]["min_duration_s"] == 0.5


def test_shipped_values_equal_schema_defaults(config):
    # config.yaml documents the defaults; the two must not drift apart.
    defaults: dict = {}
    validate(defaults, SCHEMA)
    # every section and every key of a section is written out (a model entry shows the keys of its kind only)
    assert set(config) == set(defaults)
    for section, keys in defaults.items():
        if isinstance(keys, dict) and section != "models":
            assert set(config[section]) == set(keys), section
    validate(config, SCHEMA)  # fills what a model entry leaves to its kind's defaults
    assert config == defaults


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"demo": {"n_species": "twelve"}}, "n_species"),  # wrong type
        ({"demo": {"n_specie": 3}}, "n_specie"),  # unknown key
        ({"demo": {"secondary_prob": 1.5}}, "secondary_prob"),  # out of range
        ({"manifest": {"min_duration_s": -1}}, "min_duration_s"),
        ({"data_dirr": "x"}, "data_dirr"),
        ({"demo": {"soundscape_seconds": 62}}, "soundscape_seconds"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(config, patch, key):
    cfg = copy.deepcopy(config)
    for section, value in patch.items():
        if isinstance(value, dict):
            cfg[section].update(value)
        else:
            cfg[section] = value
    with pytest.raises(Exception) as err:
        validate(cfg, SCHEMA)
    assert isinstance(err.value, jsonschema.ValidationError) or "validating" in str(err.value)
    assert key in str(err.value)


# Every refused config is checked against the resolver in-process (test_settings.py); these two
# go through Snakemake, one refused by the schema and one by the resolver, to prove that nothing runs.
@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("demo:\n  seeed: 1\n", "seeed"),
        ("models:\n  m: {backbone: resnet_999}\n", "models.m"),
    ],
)
def test_snakemake_stops_at_once_naming_the_key(tmp_path, text, key):
    (tmp_path / "bad.yaml").write_text(text)
    proc = run_snakemake(tmp_path, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert key in proc.stderr + proc.stdout
    assert not (tmp_path / "resources").exists()  # nothing ran


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_ready_made_configs_are_valid_and_plan_a_dag(tmp_path, tiny_demo, path):
    # data_dir is theirs to set; any Kaggle-layout folder will do to check the rest
    proc = run_snakemake(tmp_path, "-n", "--configfile", str(path), "--config", f"data_dir={tiny_demo}")
    assert "train_teacher" in proc.stdout + proc.stderr


def test_a_config_that_would_run_code_on_load_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.yaml").write_text(f"demo: !!python/object/apply:os.system ['touch {marker}']\n")
    proc = run_snakemake(tmp_path, "-n", "--configfile", "evil.yaml", check=False)
    assert proc.returncode != 0
    assert not marker.exists()  # YAML is loaded safely: the tag is an error, never a call
