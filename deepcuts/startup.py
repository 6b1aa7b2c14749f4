"""A task process's start-up and the cyclic garbage collector: one mechanism for every entry point.

Start-up is mostly imports (pandas, pyarrow, scipy, pydantic settings, Great Expectations, Airflow's own
modules): hundreds of thousands of long-lived objects that the collector's full collections would walk
again and again, while they are built and then during the step's work. :func:`start_up` builds them with
the collector paused and then freezes them (``gc.freeze``: left out of every later collection);
:func:`freeze_start_up` freezes what a process has built when its imports could not be wrapped (an
Airflow task body imports its step before it reaches deepcuts code). Outputs do not depend on when the
collector runs.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def start_up() -> Iterator[None]:
    """Run start-up (imports, settings) with the collector paused, then freeze what it built.

    Only garbage cycles made during start-up stay in memory (a collection first would cost a full walk
    of the same heap). A failed start-up restores the collector and freezes nothing; a collector the
    caller had switched off stays off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
    gc.freeze()


def freeze_start_up() -> None:
    """Freeze what the process has built so far, unless something is frozen already (a start-up of
    :func:`start_up`'s, or an earlier call): where tasks share one process (``dag.test()``), a later
    freeze could pin an earlier task's garbage cycles for good."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
