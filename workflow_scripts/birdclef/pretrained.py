"""Pretrained backbone weights: fetching ``hf-hub:`` names, and what each training run records of its weights.

``models.<name>.pretrained`` is a local timm weights file or an ``hf-hub:<repo>[@<revision>]``
name (see ``birdclef.settings``). Hub weights go through timm's own loader and the Hugging
Face cache (``HF_HOME``/``HF_HUB_CACHE``; ``HF_HUB_OFFLINE=1`` reads the cache only).

The workflow fetches each hub name once, in rule ``pretrained_weights``, before the
model trains (``fetch_hub_weights``): it resolves the revision to the commit of the
snapshot in the cache, checks the repo's architecture against ``backbone``, builds the
backbone once (which proves the weights load) and writes a record. Training then loads
``hf-hub:<repo>@<commit>`` (``pinned_name``): the very snapshot that was fetched, read
from the cache without a request. Each fold's metrics.json says which weights it
started from (``describe_pretrained``): the hub name and commit, or a local file's
path and sha256.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import timm
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from birdclef.models import create_backbone
from birdclef.settings import HUB_PREFIX, ConfigError, ModelConfig, hub_repo, is_hub_name

COMMIT = re.compile(r"[0-9a-f]{40}")


class FetchError(RuntimeError):
    """Hub weights that cannot be fetched; the message starts with the config key."""


def _why(err: Exception) -> str:
    """Why a fetch failed, in words (the exception's own text follows)."""
    if isinstance(err, LocalEntryNotFoundError):  # before EntryNotFoundError, its parent
        where = f"it is not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
        if constants.is_offline_mode():
            return f"HF_HUB_OFFLINE is set and {where}"
        return f"the Hub cannot be reached and {where}"
    if isinstance(err, GatedRepoError):  # before RepositoryNotFoundError, its parent
        return "the repo is gated: accept its terms on huggingface.co and log in (hf auth login)"
    if isinstance(err, RepositoryNotFoundError):
        return "no such repo on the Hub (or a private one: log in with hf auth login)"
    if isinstance(err, RevisionNotFoundError):
        return "the repo has no such revision"
    if isinstance(err, EntryNotFoundError):
        return "a file timm needs (config.json, weights) is not in the repo: is it a timm model?"
    return "timm could not load it"


def _fetch_error(key: str, name: str, err: Exception) -> FetchError:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return FetchError(f"{key}: cannot fetch {name}: {_why(err)} ({type(err).__name__}: {first_line})")


def pinned_name(repo: str, commit: str) -> str:
    """The hub name of one snapshot, ``hf-hub:<repo>@<commit>``: loads the same weights whatever main becomes."""
    return f"{HUB_PREFIX}{repo}@{commit}"


def pinned_config(cfg: ModelConfig, record: str | Path | None) -> ModelConfig:
    """``cfg`` with its hf-hub: name pinned to the snapshot a ``fetch_hub_weights`` record names (None: as it is)."""
    if record is None:
        return cfg
    fetched = json.loads(Path(record).read_text())
    if fetched["name"] != cfg.pretrained:
        raise ValueError(f"{record} holds {fetched['name']}, but the model's pretrained is {cfg.pretrained}")
    return replace(cfg, pretrained=pinned_name(fetched["repo"], fetched["revision"]))


def fetch_hub_weights(name: str, backbone: str, key: str = "pretrained") -> dict:
    """Fetch ``hf-hub:<repo>`` into the Hugging Face cache and check that it builds ``backbone``.

    Returns the record rule ``pretrained_weights`` writes: name, repo, the resolved
    revision (the snapshot's commit), the architecture and the snapshot's files. A name
    that cannot be fetched raises FetchError, one for another architecture ConfigError,
    each message starting with ``key``.
    """
    repo, revision = hub_repo(name)
    try:
        config_path = Path(
            hf_hub_download(
                repo, "config.json", revision=revision, library_name="timm", library_version=timm.__version__
            )
        )
    except Exception as err:  # any failure to fetch is reported the same way, with the key
        raise _fetch_error(key, name, err) from err
    snapshot = config_path.parent  # <cache>/models--<owner>--<repo>/snapshots/<commit>/config.json
    if not COMMIT.fullmatch(snapshot.name):
        raise FetchError(f"{key}: cannot fetch {name}: {config_path} is not in a snapshot folder of the cache")
    commit = snapshot.name
    architecture = json.loads(config_path.read_text()).get("architecture", "")
    if architecture.split(".", 1)[0] != backbone.split(".", 1)[0]:
        raise ConfigError(f"{key}: {name} holds {architecture} weights (its config.json), but backbone is {backbone}")
    try:  # fetches the weights file timm picks, and shows that it loads as training will load it
        create_backbone(backbone, pinned_name(repo, commit))
    except Exception as err:
        raise _fetch_error(key, name, err) from err
    return {
        "name": name,
        "repo": repo,
        "requested_revision": revision or "main",
        "revision": commit,
        "architecture": architecture,
        "timm": timm.__version__,
        "files": sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def cached_revision(name: str) -> str | None:
    """The commit of the cached snapshot an ``hf-hub:`` name resolves to (its pinned one, or its ref's), if cached."""
    repo, revision = hub_repo(name)
    if revision and COMMIT.fullmatch(revision):
        return revision
    path = try_to_load_from_cache(repo, "config.json", revision=revision or "main")
    return Path(path).parent.name if isinstance(path, str) else None


def describe_pretrained(pretrained: str | None) -> dict | None:
    """What metrics.json records of the starting weights: None (scratch), hub name and commit, or file and sha256."""
    if not pretrained:
        return None
    if is_hub_name(pretrained):
        return {"name": pretrained, "repo": hub_repo(pretrained)[0], "revision": cached_revision(pretrained)}
    path = Path(pretrained)
    return {"name": pretrained, "path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": _sha256(path)}
