"""One home for the formulas several modules use, each written once with its definition.

Like lenskit's ``stats.py``: the monitor, the offline metrics, the arms, the scoreboard and the simulator
import these instead of keeping copies that can drift apart. Pure numpy; nothing here reads data or
settings (callers pass the settings' values in).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

from deepcuts.contracts import Daypart

BoolArray = npt.NDArray[np.bool_]
#: Number-like inputs the elementwise formulas keep the type of (float, numpy array, pandas Series).
N = TypeVar("N")


def gini(counts: npt.ArrayLike) -> float:
    """Gini coefficient of non-negative counts (exposure per catalog item; zeros included).

    ``G = sum_i (2i - n - 1) x_(i) / (n sum_i x_i)`` with ``x_(1) <= ... <= x_(n)`` and ``i = 1..n``.
    0 = every item equally exposed; ``(n - 1) / n`` = everything on one item; 0 when nothing is exposed
    (no concentration to measure).
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = x.size
    total = x.sum()
    if n == 0 or total <= 0:
        return 0.0
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def bayesian_mean(sums: N, counts: N, prior_mean: float, prior_weight: float) -> N:
    """Shrunk (Bayesian) mean rating ``q = (s + m mu) / (n + m)`` elementwise, ``s`` the sum and ``n`` the
    number of ratings, ``mu`` the prior (global) mean, ``m`` the prior weight
    (``arms.quality.prior_weight``): few ratings are pulled toward ``mu``; an unrated item gets ``mu``.
    Works on floats, numpy arrays and pandas Series (the result has the inputs' type)."""
    return (sums + prior_weight * prior_mean) / (counts + prior_weight)  # type: ignore[operator]


def long_tail_mask(counts: npt.ArrayLike, head_share: float) -> BoolArray:
    """True for the items outside the short head that holds ``head_share`` of all interactions.

    Sort items by count descending (ties: lower index first); the head is the shortest prefix whose
    cumulative count reaches ``head_share * total``; every other item (unrated ones too) is long tail.
    With no interactions at all, every item is long tail.
    """
    if not 0.0 < head_share < 1.0:
        raise ValueError(f"head_share must be in (0, 1) (got {head_share}); set arms.long_tail.head_share")
    n = np.asarray(counts, dtype=np.float64)
    total = n.sum()
    tail = np.ones(n.size, dtype=bool)
    if total <= 0:
        return tail
    order = np.lexsort((np.arange(n.size), -n))
    cumulative = np.cumsum(n[order])
    # first position where the prefix reaches the head share; the head is order[: pos + 1]
    pos = int(np.searchsorted(cumulative, head_share * total - 1e-9 * total, side="left"))
    tail[order[: pos + 1]] = False
    return tail


def scale_5pt(value: float, rating_min: float, rating_max: float) -> float:
    """A value on the 1..5 scale mapped linearly onto ``[rating_min, rating_max]``:
    ``rating_min + (value - 1) (rating_max - rating_min) / 4`` (thresholds are set on 5 points)."""
    return rating_min + (value - 1.0) * (rating_max - rating_min) / 4.0


def daypart_hours(starts: tuple[int, int, int, int]) -> dict[str, tuple[int, int]]:
    """``{daypart: (start_hour, end_hour)}`` in ``Daypart`` order from the four UTC start hours
    (``bandit.daypart_starts``, ``world.daypart_starts``); the last daypart ends where the first starts."""
    names = [d.value for d in Daypart]
    return {d: (int(starts[k]), int(starts[(k + 1) % len(names)])) for k, d in enumerate(names)}
