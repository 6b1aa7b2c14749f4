"""Tiny canonical frames with known answers, shared by the model and step tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from deepcuts.contracts import C
from deepcuts.settings import Settings, load_settings

#: Group A (12 users) rates items 1..5, group B (8 users) rates items 6..10, all with 5 stars,
#: except user 1 who has not seen item 5: the held-out checkerboard cell every arm must return first.
GROUP_A_USERS = list(range(1, 13))
GROUP_B_USERS = list(range(13, 21))
GROUP_A_ITEMS = [1, 2, 3, 4, 5]
GROUP_B_ITEMS = [6, 7, 8, 9, 10]
HELD_OUT = (1, 5)


def block_world() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for users, items in ((GROUP_A_USERS, GROUP_A_ITEMS), (GROUP_B_USERS, GROUP_B_ITEMS)):
        for u in users:
            for i in items:
                if (u, i) != HELD_OUT:
                    rows.append((u, i, 5.0))
    interactions = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RATING])
    interactions[C.RATING] = interactions[C.RATING].astype(np.float32)
    interactions[C.TS] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.arange(len(interactions)), unit="min"
    )
    items = pd.DataFrame(
        {
            C.ITEM_ID: np.arange(1, 12, dtype=np.int64),  # item 11 is in the catalog, never rated
            C.TITLE: [f"item {i}" for i in range(1, 12)],
            C.GENRES: [["Drama"]] * 5 + [["Anime", "Comedy"]] * 5 + [[]],
            C.YEAR: np.full(11, 2000, dtype=np.int32),
        }
    )
    return interactions, items


def random_world(
    seed: int, n_users: int = 30, n_items: int = 25, density: float = 0.2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random ratings 1..5 (every user has at least one), genres drawn from four names."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    u, i = np.nonzero(mask)
    interactions = pd.DataFrame(
        {
            C.USER_ID: (u + 1).astype(np.int64),
            C.ITEM_ID: (i + 1).astype(np.int64),
            C.RATING: rng.integers(1, 6, u.size).astype(np.float32),
            C.TS: pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(u.size), unit="s"),
        }
    )
    names = np.array(["Action", "Anime", "Drama", "Western"])
    items = pd.DataFrame(
        {
            C.ITEM_ID: np.arange(1, n_items + 1, dtype=np.int64),
            C.TITLE: [f"t{j}" for j in range(n_items)],
            C.GENRES: [list(names[rng.random(4) < 0.4]) for _ in range(n_items)],
            C.YEAR: np.full(n_items, 1999, dtype=np.int32),
        }
    )
    return interactions, items


#: Arm settings sized for worlds of ~20 users x ~10 items (the production defaults are for MovieLens).
TINY_ARMS: dict[str, Any] = {
    "svd": {"factors": 2},
    "lightfm": {"components": 8, "epochs": 30, "threads": 1},
    "item_cf": {"ease_lambda": 1.0},
}


def tiny_settings(**overrides: Any) -> Settings:
    arms = {**TINY_ARMS, **overrides.pop("arms", {})}
    return load_settings(arms=arms, **overrides)
