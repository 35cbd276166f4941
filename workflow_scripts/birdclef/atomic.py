"""Atomic outputs: a file or folder appears under its final name whole, or not at all.

Why: Snakemake deletes the outputs of a job that fails, but a process that is killed
(SIGKILL, power loss, a cluster's time limit) leaves whatever it had written so far, and
a job in another process can open a file while it is still being written. A rename
within one filesystem is atomic (``os.replace``, POSIX ``rename(2)``): a reader sees the
old name absent (or the old file) or the new file whole, never half of it. So every
output is written under a hidden temporary name in its own folder (the same
filesystem) and renamed into place only once the writer is done.

Two context managers, stdlib only (every rule's environment can import this):

- ``atomic_path(path)`` for one file (and any companions its writer puts next to it,
  such as the ``.bin`` that ``ov.save_model`` writes beside an ``.xml``);
- ``atomic_dir(path)`` for a folder output.

``birdclef.tables.write_csv``/``write_parquet``/``write_json`` are built on them, and
``tests/test_atomic.py`` fails when a module under ``workflow_scripts/`` writes a file
any other way.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_serial = itertools.count()  # two threads of one process never share a temporary


def _hidden(path: Path, kind: str) -> Path:
    """``<folder>/.<name>.<pid>-<n>.<kind>``: next to ``path``, hidden, unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}-{next(_serial)}.{kind}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield the temporary path to write ``path`` at; rename it into place when the block ends without error.

    The temporary is ``<folder>/.<name>.<pid>-<n>.tmp/<name>``: a file of the very same
    name inside a hidden folder next to ``path``. So a writer that picks its format by
    the suffix (matplotlib's ``savefig``, pandas' compression) sees the real one, and a
    writer that puts companions next to its file (``ov.save_model`` writes ``x.bin``
    beside ``x.xml``) puts them in the same hidden folder. On success every file found
    there is renamed into ``path``'s folder, ``path`` itself last (a final ``x.xml``
    implies its ``x.bin``), and the hidden folder is removed. On an exception nothing
    under a final name changes and the temporary is removed. The parent folder is created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = _hidden(path, "tmp")
    work.mkdir()
    tmp = work / path.name
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{path}: the writer left nothing at its temporary path {tmp}")
        for companion in sorted(p for p in work.iterdir() if p.name != path.name):
            os.replace(companion, path.with_name(companion.name))
        os.replace(tmp, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty hidden folder to fill; when the block ends without error it replaces ``path``.

    An older ``path`` (folder or file) is first renamed aside, then removed once the new
    folder is in place, so ``path`` is always either absent, the old one or the new one
    whole. On an exception the temporary folder is removed and an older ``path`` is kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists() or path.is_symlink():
            old = _hidden(path, "old")
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        if old is not None:
            _remove(old)
    finally:
        _remove(tmp)
