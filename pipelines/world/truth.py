"""The ground truth of a synthetic world, for the simulator: who visits, who clicks, what they rate.

Day indices count from the world's ``first_run_date``: ``day_index = 0`` is the first run date itself
(the last day of the history), ``1`` the next day, and so on. User and item ids are the world's ids
(``1..users`` and ``1..items``). All methods are vectorised over aligned arrays.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq

from deepcuts.contracts import C
from deepcuts.pipelines.world.model import DAYPARTS, FIRST_VISIT_DAY, SEGMENTS, WorldModel
from deepcuts.seeds import derive_seed


class WorldNotFoundError(FileNotFoundError):
    """The folder does not hold a complete synthetic world."""


class TruthModel:
    """Ground-truth preferences and behaviour of a synthetic world (read-only)."""

    def __init__(
        self,
        model: WorldModel,
        meta: dict,
        users: dict[str, np.ndarray],
        items: dict[str, np.ndarray],
        user_factors: np.ndarray,
        item_factors: np.ndarray,
    ) -> None:
        self.model = model
        self.meta = meta
        self.seed: int = int(meta["seed"])
        self.first_run_date = date.fromisoformat(meta["first_run_date"])
        self.n_users = len(users[C.USER_ID])
        self.n_items = len(items[C.ITEM_ID])
        self.users = users
        self.items = items
        self.user_factors = user_factors.astype(np.float64)
        self.item_factors = item_factors.astype(np.float64)
        lookup = {s: k for k, s in enumerate(SEGMENTS)}
        self._segment_index = np.array([lookup[s] for s in users[C.SEGMENT]], dtype=np.int64)
        self._habits = np.column_stack([users[f"p_{d}"] for d in DAYPARTS])
        # Worlds written before sign-ups existed have no such column: everyone can visit from day 0.
        self._first_visit = np.asarray(users.get(FIRST_VISIT_DAY, np.zeros(self.n_users)), dtype=np.int64)
        self._appetite_table = model.appetite_table()
        self._noise_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------------------------------ load
    @classmethod
    def load(cls, world_dir: str | Path) -> TruthModel:
        """Read ``world.json`` and ``truth/`` written by :func:`deepcuts.pipelines.world.generate_world`."""
        folder = Path(world_dir).expanduser()
        meta_path = folder / "world.json"
        if not meta_path.exists():
            raise WorldNotFoundError(
                f"{folder} holds no finished synthetic world (no world.json); "
                f"run `deepcuts generate --out {folder}`"
            )
        meta = json.loads(meta_path.read_text())
        files = meta["files"]
        try:
            model = WorldModel.from_json(json.loads((folder / files["model"]).read_text()))
            users = pq.read_table(folder / files["truth_users"]).to_pydict()
            items = pq.read_table(folder / files["truth_items"]).to_pydict()
            user_factors = np.load(folder / files["user_factors"], allow_pickle=False)
            item_factors = np.load(folder / files["item_factors"], allow_pickle=False)
        except FileNotFoundError as exc:
            raise WorldNotFoundError(f"{folder}: truth file missing ({exc}); regenerate the world") from exc
        users_np = {k: np.asarray(v) for k, v in users.items()}
        items_np = {
            k: np.asarray(v, dtype=float if k == "history_mean_rating" else None) for k, v in items.items()
        }
        return cls(model, meta, users_np, items_np, user_factors, item_factors)

    # ----------------------------------------------------------------------------------------- ids
    def _uidx(self, user_ids: npt.ArrayLike) -> np.ndarray:
        ids = np.asarray(user_ids, dtype=np.int64)
        if ids.size and (ids.min() < 1 or ids.max() > self.n_users):
            raise ValueError(f"user ids must be in 1..{self.n_users}; got range {ids.min()}..{ids.max()}")
        return ids - 1

    def _iidx(self, item_ids: npt.ArrayLike) -> np.ndarray:
        ids = np.asarray(item_ids, dtype=np.int64)
        if ids.size and (ids.min() < 1 or ids.max() > self.n_items):
            raise ValueError(f"item ids must be in 1..{self.n_items}; got range {ids.min()}..{ids.max()}")
        return ids - 1

    @staticmethod
    def _daypart_index(daypart: str) -> int:
        try:
            return DAYPARTS.index(str(daypart))
        except ValueError:
            raise ValueError(f"unknown daypart {daypart!r}; choose one of {list(DAYPARTS)}") from None

    # ------------------------------------------------------------------------------------- queries
    def date_of(self, day_index: int) -> date:
        """Calendar date of a simulation day (``0`` = ``first_run_date``)."""
        return self.first_run_date + timedelta(days=int(day_index))

    def segment_of(self, user_ids: npt.ArrayLike) -> np.ndarray:
        """The world's own segment label (``new`` / ``casual`` / ``power``) per user."""
        return np.asarray(SEGMENTS, dtype=object)[self._segment_index[self._uidx(user_ids)]]

    def latent_mean(self, user_ids: npt.ArrayLike, item_ids: npt.ArrayLike) -> np.ndarray:
        """``m_ui = mu + b_u + quality_weight theta_i + p_u . q_i - c`` for aligned pairs."""
        u, i = np.broadcast_arrays(self._uidx(user_ids), self._iidx(item_ids))
        m = self.model
        affinity = np.einsum("ij,ij->i", self.user_factors[u.ravel()], self.item_factors[i.ravel()])
        out = (
            m.mu
            + self.users["bias"][u.ravel()]
            + m.quality_weight * self.items["quality"][i.ravel()]
            + affinity
            - m.affinity_center
        )
        return out.reshape(u.shape)

    def expected_rating(self, user_ids: npt.ArrayLike, item_ids: npt.ArrayLike) -> np.ndarray:
        """Exact mean of :meth:`sample_ratings` for each pair (on the world's rating scale)."""
        return self.model.expected_rating(self.latent_mean(user_ids, item_ids))

    def sample_ratings(
        self, user_ids: npt.ArrayLike, item_ids: npt.ArrayLike, rng: np.random.Generator
    ) -> np.ndarray:
        """One rating per pair: latent mean plus Gaussian noise, rounded to the scale's step (float32)."""
        return self.model.sample_ratings(self.latent_mean(user_ids, item_ids), rng)

    def visit_probability(self, day_index: int, daypart: str) -> np.ndarray:
        """``P(u visits in daypart d of day t) = 1 - exp(-s_u h_ud w_t)`` for every user (index = id - 1),
        with ``w_t = weekend_factor`` on Saturdays and Sundays, else 1; 0 before the user's first visit
        day (sign-ups that have not joined yet, or joined today)."""
        d = self._daypart_index(daypart)
        weekend = self.date_of(day_index).weekday() >= 5
        w = self.model.weekend_factor if weekend else 1.0
        p = 1.0 - np.exp(-self.users["sessions_per_day"] * self._habits[:, d] * w)
        return np.where(self._first_visit <= int(day_index), p, 0.0)

    def active_users(self, day_index: int, daypart: str, rng: np.random.Generator) -> np.ndarray:
        """Ids (sorted) of the users who visit in ``daypart`` of day ``day_index``."""
        p = self.visit_probability(day_index, daypart)
        return np.flatnonzero(rng.random(self.n_users) < p).astype(np.int64) + 1

    def appetite(self, user_ids: npt.ArrayLike, daypart: str) -> np.ndarray:
        """Novelty appetite ``kappa_{u,d} = c_u + A[segment_u, d]``."""
        u = self._uidx(user_ids)
        d = self._daypart_index(daypart)
        return self.users["appetite"][u] + self._appetite_table[self._segment_index[u], d]

    def day_noise(self, day_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-day click noise (item vector, user vector), seeded by ``derive_seed(seed, day, ...)``."""
        day = int(day_index)
        if day not in self._noise_cache:
            rng = np.random.default_rng(derive_seed(self.seed, self.date_of(day), "world/click-noise"))
            item = rng.normal(0.0, self.model.item_day_sd, size=self.n_items)
            user = rng.normal(0.0, self.model.user_day_sd, size=self.n_users)
            if len(self._noise_cache) > 8:
                self._noise_cache.clear()
            self._noise_cache[day] = (item, user)
        return self._noise_cache[day]

    def click_probability(
        self,
        user_ids: npt.ArrayLike,
        item_ids: npt.ArrayLike,
        positions: npt.ArrayLike,
        daypart: str,
        day_index: int,
    ) -> np.ndarray:
        """``P(click) = pos^-eta * sigmoid(beta0 + beta_r z_ui + kappa_{u,d} nov_i + e_{i,t} + e_{u,t})``.

        ``positions`` are 1-based ranks in the served list; ``z_ui`` is the standardised latent mean.
        """
        u = self._uidx(user_ids)
        i = self._iidx(item_ids)
        if not (u.shape == i.shape == np.shape(positions)):
            raise ValueError(
                f"user_ids, item_ids and positions must have the same shape; got "
                f"{u.shape}, {i.shape}, {np.shape(positions)}"
            )
        examine = self.model.examination(positions)
        item_noise, user_noise = self.day_noise(day_index)
        attract = self.model.attraction(
            self.latent_mean(u + 1, i + 1),
            self.appetite(u + 1, daypart),
            self.items["novelty"][i],
            item_noise[i] + user_noise[u],
        )
        return examine * attract

    # --------------------------------------------------------------------------------- item facts
    def hidden_gems(self) -> np.ndarray:
        """Ids of the hidden gems (top-quality items outside the exposure head)."""
        return np.flatnonzero(self.items["hidden_gem"]).astype(np.int64) + 1


@lru_cache(maxsize=4)
def cached_truth(world_dir: str) -> TruthModel:
    """A process-wide cache of loaded truths (the simulator calls it every simulated day)."""
    return TruthModel.load(world_dir)
