"""One check for the config dataclasses: a key the dataclass does not have is a typo, named in the error."""

from __future__ import annotations

from dataclasses import fields


def check_keys(cls: type, values: dict, section: str) -> None:
    """Raise ValueError naming ``section`` and every key of ``values`` that is not a field of ``cls``."""
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {section} keys: {sorted(unknown)}")
