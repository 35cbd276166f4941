"""One way to spread independent tasks over processes, or run them in this one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def ordered_map(fn: Callable[[Any], Any], tasks: Iterable, workers: int, chunksize: int = 1) -> Iterator:
    """``fn`` over ``tasks``, results in task order; a process pool when ``workers > 1``.

    With one worker nothing is forked, which keeps tracebacks plain and tests cheap.
    ``fn`` must be a module-level function (it is pickled for the pool).
    """
    if workers <= 1:
        yield from map(fn, tasks)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, tasks, chunksize=chunksize)
