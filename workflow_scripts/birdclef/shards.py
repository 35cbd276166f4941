"""Stable sharding: which shard a clip belongs to, the same on every machine and run.

Work that scales with the data is split by a hash of the clip id, so that adding
one recording changes one shard, not all of them. Python's ``hash()`` is salted
per process, so this uses SHA-1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from birdclef.layout import list_audio_files


def shard_of(clip_id: str, n_shards: int) -> int:
    """The shard (0 .. n_shards-1) of ``clip_id``."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    digest = hashlib.sha1(clip_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n_shards


def shard_name(shard: int) -> str:
    """File stem of a shard: ``shard-007``."""
    return f"shard-{shard:03d}"


def shard_for(item_id: str, n_shards: int) -> str:
    """File stem of the shard that holds ``item_id``."""
    return shard_name(shard_of(item_id, n_shards))


T = TypeVar("T")


def group_by_shard(items: Iterable[T], n_shards: int, key: Callable[[T], str]) -> dict[str, list[T]]:
    """``items`` grouped by the shard of ``key(item)``, each group in the items' order (absent shards: no key).

    One pass over the items: planning every shard of a Kaggle-sized folder must not hash every file once per shard.
    """
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(shard_for(key(item), n_shards), []).append(item)
    return groups


def files_in_shard(inputs: Iterable[str | Path], n_shards: int, shard: str) -> list[Path]:
    """The files among ``inputs`` (files, or folders standing for every file under them) whose stem is in ``shard``."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        paths += [item / name for name in list_audio_files(item)] if item.is_dir() else [item]
    return sorted(group_by_shard(paths, n_shards, lambda p: p.stem).get(shard, []), key=lambda p: p.stem)
