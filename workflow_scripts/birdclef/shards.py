"""Stable sharding: which shard a clip belongs to, the same on every machine and run.

Work that scales with the data is split by a hash of the clip id, so that adding
one recording changes one shard, not all of them. Python's ``hash()`` is salted
per process, so this uses SHA-1.
"""

from __future__ import annotations

import hashlib


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
