"""Logging for the scripts that rules run: progress to the rule's log file."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> None:
    """Send log records to ``log_path`` (the rule's ``log:``) and to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)


def run_logged(log_path: str | Path | None, main: Callable[..., Any], *args: Any) -> Any:
    """Run ``main(*args)`` with logging set up; a crash's traceback lands in the log too."""
    setup_logging(log_path)
    try:
        return main(*args)
    except Exception:
        logging.getLogger(main.__module__).exception("failed")
        raise
