"""Explicit, derived seeds: one master seed, a stable sub-seed per (run date, component)."""

from __future__ import annotations

import hashlib
from datetime import date

import numpy as np


def derive_seed(master: int, run_date: date | str | None, component: str) -> int:
    """A 32-bit seed from the master seed, the run date and a component name.

    Hash-based, so adding a component never shifts the seeds of the others, and a rerun of a run date
    reproduces the same random stream.
    """
    key = f"{master}:{run_date.isoformat() if isinstance(run_date, date) else run_date}:{component}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def rng_for(master: int, run_date: date | str | None, component: str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(master, run_date, component))
