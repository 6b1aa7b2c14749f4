"""The simulator's worlds: who visits on a served day and how they respond, and the feedback they log.

:class:`SyntheticWorld` answers from the ground truth of ``deepcuts.pipelines.world``; :class:`ReplayWorld`
replays MovieLens ratings after a cut (see :mod:`deepcuts.pipelines.simulate`, which runs the nights, and
:mod:`deepcuts.pipelines.simulate_summary`, which measures them). :func:`feedback_events` turns shown lists
and responses into ``FEEDBACK_SCHEMA`` rows, the landing input of the next night.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pandas as pd

from deepcuts.contracts import FEEDBACK_SCHEMA, C, EventType
from deepcuts.formulas import scale_5pt
from deepcuts.progress import get_logger
from deepcuts.seeds import rng_for
from deepcuts.settings import Settings

log = get_logger(__name__)

WorldKind = Literal["synthetic", "movielens"]
#: Minutes after the start of its hour within which a visit starts: its clicks and ratings (at most
#: ``list_length * _CLICK_DELAY_S + _RATING_DELAY_S`` later) land in the same hour, so an hourly refresh
#: slot holds whole visits, and the last hour's stay in the same day.
_VISIT_MINUTES: Final = 45
#: Column of a visits frame (simulator-internal, never written): the minute of the served day (UTC) at
#: which the visit starts. Worlds without it get the daypart-start timing of :func:`feedback_events`.
VISIT_MINUTE: Final = "visit_minute"
_CLICK_DELAY_S: Final = 20
_RATING_DELAY_S: Final = 300


# ================================================================================== worlds
class SimWorld(ABC):
    """Who visits on a served day and how they respond to the lists they are shown."""

    name: str
    #: True when the world knows expected click probabilities (best arm, regret).
    has_truth: bool = False

    @property
    @abstractmethod
    def first_night(self) -> date:
        """Run date of night 1."""

    @abstractmethod
    def visits(self, day_index: int, served_day: date, rng: np.random.Generator) -> pd.DataFrame:
        """``user_id``, ``daypart`` of every visit on ``served_day`` (day ``day_index`` after night 1)."""

    @abstractmethod
    def respond(
        self, shown: pd.DataFrame, day_index: int, served_day: date, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per shown row (``user_id``, ``daypart``, ``rank``, ``item_id``): clicked flag and rating (NaN
        when not rated)."""

    def visit_minutes(self, visits: pd.DataFrame, rng: np.random.Generator) -> np.ndarray | None:
        """Minute of the served day (UTC) at which each visit starts, or None: the world does not say
        (the visit then starts in its daypart's first hour, :func:`feedback_events`)."""
        return None

    def expected_reward(self, lists: pd.DataFrame, day_index: int) -> pd.Series:
        """Expected bandit reward per (``user_id``, ``daypart``, ``arm``) list; only with a truth."""
        raise NotImplementedError(f"the {self.name} world has no ground truth")

    def visit_weight(self, pairs: pd.DataFrame, day_index: int) -> np.ndarray:
        """Probability that each (``user_id``, ``daypart``) visits on day ``day_index``; only with a truth."""
        raise NotImplementedError(f"the {self.name} world has no ground truth")


class SyntheticWorld(SimWorld):
    """Users and responses from the ground truth of a world built by
    ``deepcuts.pipelines.world.generate_world``."""

    name = "synthetic"
    has_truth = True

    def __init__(
        self,
        world_dir: str | Path,
        rating_probability: float,
        planted: dict[str, str] | None = None,
        planted_lift: float = 0.0,
        visit_hours: dict[str, np.ndarray] | None = None,
    ) -> None:
        from deepcuts.pipelines.world import TruthModel

        self.truth = TruthModel.load(world_dir)
        self.rating_probability = rating_probability
        #: Context (``segment/daypart``) -> arm whose lists get click probabilities x (1 + planted_lift).
        self.planted = dict(planted or {})
        self.planted_lift = planted_lift
        #: Daypart -> probability of each UTC hour 0..23 that a visit of the daypart starts in it
        #: (:func:`visit_hour_probabilities`); None = every visit starts in its daypart's first hour.
        self.visit_hours = visit_hours

    @property
    def first_night(self) -> date:
        return self.truth.first_run_date

    def visits(self, day_index: int, served_day: date, rng: np.random.Generator) -> pd.DataFrame:
        from deepcuts.pipelines.world import DAYPARTS

        if self.truth.date_of(day_index) != served_day:
            raise ValueError(f"day index {day_index} is {self.truth.date_of(day_index)}, not {served_day}")
        frames = [
            pd.DataFrame({C.USER_ID: self.truth.active_users(day_index, d, rng), C.DAYPART: d})
            for d in DAYPARTS
        ]
        return pd.concat(frames, ignore_index=True)

    def visit_minutes(self, visits: pd.DataFrame, rng: np.random.Generator) -> np.ndarray | None:
        if self.visit_hours is None:
            return None
        return draw_visit_minutes(visits[C.DAYPART].to_numpy(object), self.visit_hours, rng)

    def click_probability(self, shown: pd.DataFrame, day_index: int) -> np.ndarray:
        out = np.zeros(len(shown))
        for daypart, idx in shown.groupby(C.DAYPART, sort=True).indices.items():
            rows = shown.iloc[idx]
            out[idx] = self.truth.click_probability(
                rows[C.USER_ID].to_numpy(np.int64),
                rows[C.ITEM_ID].to_numpy(np.int64),
                rows[C.RANK].to_numpy(np.int64),
                str(daypart),
                day_index,
            )
        if self.planted and self.planted_lift:
            planted = np.array(
                [
                    self.planted.get(context_key(seg, dp)) == arm
                    for seg, dp, arm in zip(shown[C.SEGMENT], shown[C.DAYPART], shown[C.ARM], strict=True)
                ]
            )
            out = np.where(planted, np.minimum(out * (1.0 + self.planted_lift), 1.0), out)
        return out

    def respond(
        self, shown: pd.DataFrame, day_index: int, served_day: date, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        p = self.click_probability(shown, day_index)
        clicked = rng.random(len(shown)) < p
        rated = clicked & (rng.random(len(shown)) < self.rating_probability)
        ratings = np.full(len(shown), np.nan)
        if rated.any():
            rows = shown[rated]
            ratings[rated] = self.truth.sample_ratings(
                rows[C.USER_ID].to_numpy(np.int64), rows[C.ITEM_ID].to_numpy(np.int64), rng
            )
        return clicked, ratings

    def visit_weight(self, pairs: pd.DataFrame, day_index: int) -> np.ndarray:
        out = np.zeros(len(pairs))
        for daypart, idx in pairs.groupby(C.DAYPART, sort=True).indices.items():
            p = self.truth.visit_probability(day_index, str(daypart))
            out[idx] = p[pairs[C.USER_ID].to_numpy(np.int64)[idx] - 1]
        return out

    def expected_reward(self, lists: pd.DataFrame, day_index: int) -> pd.Series:
        p = np.clip(self.click_probability(lists, day_index), 0.0, 1.0 - 1e-12)
        frame = lists[[C.USER_ID, C.DAYPART, C.ARM]].assign(_log_miss=np.log1p(-p))
        log_miss = frame.groupby([C.USER_ID, C.DAYPART, C.ARM], sort=True)["_log_miss"].sum()
        return -np.expm1(log_miss)


class ReplayWorld(SimWorld):
    """MovieLens replay: the ratings after the cut are the truth (see the module docstring)."""

    name = "movielens"

    def __init__(
        self,
        interactions: pd.DataFrame,
        first_night: date,
        window_days: int,
        click_rating: float,
        daypart_of: Callable[[pd.Series], np.ndarray],
    ) -> None:
        self.ratings = interactions[[C.USER_ID, C.ITEM_ID, C.RATING, C.TS]].copy()
        self.ratings["_day"] = pd.to_datetime(self.ratings[C.TS], utc=True).dt.date
        self._first_night = first_night
        self.window_days = window_days
        self.click_rating = click_rating
        self.daypart_of = daypart_of

    @property
    def first_night(self) -> date:
        return self._first_night

    def visits(self, day_index: int, served_day: date, rng: np.random.Generator) -> pd.DataFrame:
        day = self.ratings[self.ratings["_day"] == served_day].sort_values([C.USER_ID, C.TS])
        first = day.drop_duplicates(C.USER_ID, keep="first")
        return pd.DataFrame(
            {C.USER_ID: first[C.USER_ID].to_numpy(np.int64), C.DAYPART: self.daypart_of(first[C.TS])}
        )

    def respond(
        self, shown: pd.DataFrame, day_index: int, served_day: date, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        end = served_day + timedelta(days=self.window_days)
        window = self.ratings[(self.ratings["_day"] >= served_day) & (self.ratings["_day"] < end)]
        window = window.sort_values(C.TS).drop_duplicates([C.USER_ID, C.ITEM_ID], keep="first")
        merged = shown[[C.USER_ID, C.ITEM_ID]].merge(
            window[[C.USER_ID, C.ITEM_ID, C.RATING]], on=[C.USER_ID, C.ITEM_ID], how="left"
        )
        rating = merged[C.RATING].to_numpy(np.float64)
        clicked = np.nan_to_num(rating, nan=-np.inf) >= self.click_rating
        return clicked, np.where(clicked, rating, np.nan)


# ================================================================================== feedback
def feedback_events(
    shown: pd.DataFrame,
    clicked: np.ndarray,
    ratings: np.ndarray,
    served_day: date,
    daypart_hours: dict[str, int],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """FEEDBACK_SCHEMA rows for the shown lists: impressions, clicks, ratings with deterministic ids.

    ``shown`` has one row per shown position with ``user_id``, ``daypart``, ``rank``, ``item_id``,
    ``arm``, ``variant``, ``segment``, ``propensity`` and ``list_version``, and optionally
    ``VISIT_MINUTE`` (the minute of the day the world says the visit starts). Without it a visit starts
    at a random minute of its daypart's first ``_VISIT_MINUTES`` (drawn from ``rng``); a click follows its
    impression by ``_CLICK_DELAY_S`` seconds per position, a rating follows its click by
    ``_RATING_DELAY_S``.
    """
    if shown.empty:
        return FEEDBACK_SCHEMA.empty_table().to_pandas()
    base = pd.Timestamp(datetime(served_day.year, served_day.month, served_day.day, tzinfo=UTC))
    if VISIT_MINUTE in shown.columns:
        visit_keys = shown[[C.USER_ID, C.DAYPART, VISIT_MINUTE]].drop_duplicates([C.USER_ID, C.DAYPART])
        minute_of_day = visit_keys[VISIT_MINUTE].to_numpy(np.int64)
        visit_keys = visit_keys.drop(columns=[VISIT_MINUTE]).reset_index(drop=True)
    else:
        visit_keys = shown[[C.USER_ID, C.DAYPART]].drop_duplicates().reset_index(drop=True)
        minutes = rng.integers(0, _VISIT_MINUTES, size=len(visit_keys))
        minute_of_day = visit_keys[C.DAYPART].map(daypart_hours).to_numpy(np.int64) * 60 + minutes
    visit_keys["_visit_ts"] = base + pd.to_timedelta(minute_of_day * 60, unit="s")
    frame = shown.drop(columns=[VISIT_MINUTE], errors="ignore").merge(
        visit_keys, on=[C.USER_ID, C.DAYPART], how="left"
    )
    rank = frame[C.RANK].to_numpy(np.int64)
    key = (
        "sim:"
        + served_day.isoformat()
        + ":"
        + frame[C.USER_ID].astype(str)
        + ":"
        + frame[C.DAYPART].astype(str)
        + ":"
        + frame[C.RANK].astype(str)
        + ":"
    )
    common = {
        C.USER_ID: frame[C.USER_ID].to_numpy(np.int64),
        C.ITEM_ID: frame[C.ITEM_ID].to_numpy(np.int64),
        C.POSITION: rank.astype(np.int32),
        C.ARM: frame[C.ARM].to_numpy(object),
        C.LIST_VERSION: frame[C.LIST_VERSION].to_numpy(object),
        C.VARIANT: frame[C.VARIANT].to_numpy(object),
        C.SEGMENT: frame[C.SEGMENT].to_numpy(object),
        C.DAYPART: frame[C.DAYPART].to_numpy(object),
        C.PROPENSITY: frame[C.PROPENSITY].to_numpy(np.float64),
    }
    visit_ts = frame["_visit_ts"]
    click_ts = visit_ts + pd.to_timedelta(rank * _CLICK_DELAY_S, unit="s")
    parts = []
    for kind, mask, ts in (
        (EventType.IMPRESSION, np.ones(len(frame), bool), visit_ts),
        (EventType.CLICK, clicked, click_ts),
        (EventType.RATING, ~np.isnan(ratings), click_ts + pd.Timedelta(seconds=_RATING_DELAY_S)),
    ):
        part = pd.DataFrame({k: v[mask] for k, v in common.items()})
        part.insert(0, C.EVENT_ID, (key[mask] + kind.value).to_numpy(object))
        part.insert(1, C.EVENT_TS, ts[mask].to_numpy())
        part.insert(4, C.EVENT_TYPE, kind.value)
        part[C.RATING] = ratings[mask] if kind is EventType.RATING else np.nan
        parts.append(part)
    out = pd.concat(parts, ignore_index=True).sort_values([C.EVENT_TS, C.EVENT_ID], ignore_index=True)
    return out[FEEDBACK_SCHEMA.names]


def visit_hour_probabilities(
    profile: tuple[float, ...], hour_ranges: dict[str, tuple[int, int]]
) -> dict[str, np.ndarray]:
    """Daypart -> probability of each UTC hour 0..23 that a visit of the daypart starts in it: the
    profile's weights of the daypart's hours (``[start, end)``, wrapping past midnight), normalised."""
    weights = np.asarray(profile, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for daypart, (start, end) in hour_ranges.items():
        hours = [(start + h) % 24 for h in range((end - start) % 24 or 24)]
        p = np.zeros(24)
        p[hours] = weights[hours]
        out[daypart] = p / p.sum()
    return out


def draw_visit_minutes(
    dayparts: np.ndarray, hour_probabilities: dict[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """A start minute of the day per visit: an hour from its daypart's hour probabilities (inverse CDF
    of one uniform per visit), then a minute in that hour's first ``_VISIT_MINUTES``."""
    unknown = ~np.isin(dayparts, list(hour_probabilities))
    if unknown.any():
        raise ValueError(
            f"visits in dayparts {sorted(set(dayparts[unknown]))} that have no visit hours "
            f"(known: {list(hour_probabilities)})"
        )
    u = rng.random(len(dayparts))
    minute = rng.integers(0, _VISIT_MINUTES, size=len(dayparts))
    hour = np.zeros(len(dayparts), dtype=np.int64)
    for daypart, p in hour_probabilities.items():
        mine = dayparts == daypart
        cdf = np.cumsum(p)
        # the first hour whose cumulative probability exceeds u (the min guards rounding at u ~ 1)
        hour[mine] = np.minimum(np.searchsorted(cdf, u[mine] * cdf[-1], side="right"), 23)
    return hour * 60 + minute


def context_key(segment: str, daypart: str) -> str:
    return f"{segment}/{daypart}"


def planted_arms(settings: Settings) -> dict[str, str]:
    """A planted arm per context, drawn from the master seed among the bandit arms (validation only)."""
    from deepcuts.models.policy.context import CONTEXTS

    rng = rng_for(settings.seed, None, "sim/planted-arms")
    arms = sorted(settings.bandit.arms)
    return {context_key(seg, dp): arms[int(rng.integers(len(arms)))] for seg, dp in CONTEXTS}


def prepare_world(settings: Settings, kind: WorldKind) -> SimWorld:
    """Build (or reuse) the synthetic world, or load the MovieLens ratings for replay."""
    sim = settings.simulator
    if kind == "synthetic":
        if settings.source.dataset != "synthetic":
            raise ValueError(
                f"--world synthetic needs source.dataset = 'synthetic', got {settings.source.dataset!r}"
            )
        from deepcuts.pipelines.world import generate_world

        world_dir = Path(settings.source_path)
        meta_path = world_dir / "world.json"
        wanted = settings.world.model_dump(mode="json")
        if meta_path.exists() and json.loads(meta_path.read_text()).get("settings") == wanted:
            log.info("simulate: reusing the synthetic world in %s", world_dir)
        else:
            log.info("simulate: generating the synthetic world in %s", world_dir)
            generate_world(world_dir, settings.world)
        planted = planted_arms(settings) if sim.planted_arm_lift > 0 else {}
        if planted:
            log.info("simulate: planted best arms (click x %.2f): %s", 1 + sim.planted_arm_lift, planted)
        hours = None
        if settings.world.visit_timing == "hourly":
            from deepcuts.formulas import daypart_hours

            hours = visit_hour_probabilities(
                settings.world.visit_hour_profile, daypart_hours(settings.world.daypart_starts)
            )
        return SyntheticWorld(world_dir, sim.rating_probability, planted, sim.planted_arm_lift, hours)
    if settings.source.dataset == "synthetic":
        raise ValueError("--world movielens needs a MovieLens dataset (--dataset ml-100k|ml-1m|...)")
    from deepcuts.models.policy.context import daypart_of
    from deepcuts.pipelines.loaders import load_dataset

    source = load_dataset(settings.source.dataset, settings.source_path, settings.source)
    ts = pd.to_datetime(source.interactions[C.TS], utc=True)
    if sim.replay_cut:
        cut = date.fromisoformat(sim.replay_cut)
    else:
        cut = ts.quantile(sim.replay_cut_quantile).date()
    threshold = scale_5pt(sim.replay_click_rating, source.rating_min, source.rating_max)
    log.info("simulate: MovieLens replay from cut %s, clicks = ratings >= %.2f", cut, threshold)
    return ReplayWorld(
        source.interactions,
        cut,
        sim.replay_window_days,
        threshold,
        lambda t: daypart_of(t, settings.bandit),
    )
