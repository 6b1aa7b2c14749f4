"""Progress reporting that works on a terminal (a bar) and in Airflow task logs (log lines)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """A module logger; configures a plain stderr handler once if the process has none (CLI use)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    return logging.getLogger(name)


def progress(
    iterable: Iterable[T],
    desc: str,
    total: int | None = None,
    logger: logging.Logger | None = None,
    log_every_s: float = 10.0,
) -> Iterator[T]:
    """Iterate with a tqdm bar on an interactive terminal, else with periodic log lines.

    Airflow captures logging, not a terminal, so in a task this logs ``desc: i/total`` at most every
    ``log_every_s`` seconds plus a final line with the elapsed time.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(iterable, desc=desc, total=total, leave=False)
        return
    log = logger or get_logger("deepcuts.progress")
    start = last = time.monotonic()
    count = 0
    for count, item in enumerate(iterable, start=1):
        yield item
        now = time.monotonic()
        if now - last >= log_every_s:
            log.info("%s: %d/%s (%.0fs)", desc, count, total if total is not None else "?", now - start)
            last = now
    log.info("%s: done, %d in %.1fs", desc, count, time.monotonic() - start)
