"""The tiny synthetic world the closed-loop tests simulate (60 users x 200 items: seconds a night).

One definition, so that the intraday, simulator and monitor tests run the same world; a test adds or
overrides what it is about (``world={"visit_timing": ...}``, ``simulator={...}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepcuts.settings import Settings, load_settings

TINY_SEED = 5
TINY_WORLD: dict[str, Any] = {
    "users": 60,
    "items": 200,
    "history_days": 30,
    "ratings_per_user": 12.0,
    "seed": TINY_SEED,
}
TINY_ARMS: dict[str, Any] = {"candidates_n": 60, "user_shards": 2}


def tiny_world_settings(
    home: Path, *, world: dict[str, Any] | None = None, arms: dict[str, Any] | None = None, **sections: Any
) -> Settings:
    """Settings of the tiny world under ``home``; ``world``/``arms`` are merged into the tiny ones."""
    return load_settings(
        home=str(home),
        seed=TINY_SEED,
        world={**TINY_WORLD, **(world or {})},
        arms={**TINY_ARMS, **(arms or {})},
        **sections,
    )
