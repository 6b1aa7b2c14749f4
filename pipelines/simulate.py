"""The closed-loop simulator: the real nightly steps, then a simulated app and simulated users, N times.

Night ``k`` (1..N) has run date ``D_k = first_night + (k - 1)``:

1. ``run_night(settings, D_k)`` runs every step of the registry (ingest of ``landing/feedback_events(D_k)``
   written by the previous day of the simulation, train, candidates, score, bandit update, assign, the
   evaluations, monitor, publish, report);
2. the app serves day ``S = D_k + 1``: each visiting user gets the *live* list for their daypart — the
   served lists of the last run date whose publish succeeded (what the serving DB's
   ``current_recommendations`` view returns; if publish rejects a night, yesterday's lists stay live);
3. users respond (a :class:`SimWorld`): in the synthetic world from the ground truth
   (``deepcuts.pipelines.world.TruthModel``: visits per daypart, clicks with position bias, novelty appetite
   and day-to-day noise, ratings of clicked items); in MovieLens mode by replay (an item of the shown list
   that the user rates ``>= replay_click_rating`` within ``replay_window_days`` days after ``S`` counts as
   a click, with that rating);
4. the feedback is written as ``FEEDBACK_SCHEMA`` rows to ``landing/feedback_events(S)``: an impression
   per shown position, a click per clicked position, a rating per rated click; arm, variant, segment and
   propensity from the live assignment; deterministic event ids. Night ``k + 1`` ingests it, so it goes
   through the same validation as real logs.

Per night the simulator records (``sim.json``, docs/simulator.md): impressions, clicks, CTR, mean
rating, long-tail share and genres per list by variant (from what was served on ``S``); the arm share
per context (``"segment/daypart"``) of treatment traffic; in the synthetic world the share of each
context's treatment traffic on its true best arm and the cumulative regret; and the A/B verdict of the
night. Truth-based quantities use the bandit's reward unit, a list impression with at least one click:
``reward(list) = 1 - prod_k (1 - P(click at position k))``. The true best arm of a context is the arm
whose re-ranked lists have the highest mean expected reward over the context's treatment population
(every treatment (user, daypart) of the context, weighted by its visit probability); the regret of a visit is
the value of the context's best arm minus the value of the served arm (pseudo-regret), summed over visits.
"""

from __future__ import annotations

import json
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from deepcuts.contracts import FEEDBACK_SCHEMA, C, Dataset, EventType, Variant
from deepcuts.formulas import daypart_hours, scale_5pt
from deepcuts.jsonsafe import json_safe
from deepcuts.pipelines.ab_analysis import SCOREBOARD_METRICS, niche_item_ids, targets
from deepcuts.pipelines.nightly import resolve_workers, run_night, step_pool
from deepcuts.pipelines.storage import Lake, MissingDataError
from deepcuts.progress import get_logger, progress
from deepcuts.seeds import rng_for
from deepcuts.settings import Settings

log = get_logger(__name__)

WorldKind = Literal["synthetic", "movielens"]
VARIANTS: Final = (Variant.CONTROL.value, Variant.TREATMENT.value)
#: Minutes after the daypart's start hour within which a visit happens (events stay in the same day).
_VISIT_MINUTES: Final = 45
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
    ) -> None:
        from deepcuts.pipelines.world import TruthModel

        self.truth = TruthModel.load(world_dir)
        self.rating_probability = rating_probability
        #: Context (``segment/daypart``) -> arm whose lists get click probabilities x (1 + planted_lift).
        self.planted = dict(planted or {})
        self.planted_lift = planted_lift

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
    ``arm``, ``variant``, ``segment``, ``propensity`` and ``list_version``. A visit happens at a random
    minute of its daypart's first ``_VISIT_MINUTES``; a click follows its impression by
    ``_CLICK_DELAY_S`` seconds per position, a rating follows its click by ``_RATING_DELAY_S``.
    """
    if shown.empty:
        return FEEDBACK_SCHEMA.empty_table().to_pandas()
    visit_keys = shown[[C.USER_ID, C.DAYPART]].drop_duplicates().reset_index(drop=True)
    minutes = rng.integers(0, _VISIT_MINUTES, size=len(visit_keys))
    base = pd.Timestamp(datetime(served_day.year, served_day.month, served_day.day, tzinfo=UTC))
    hours = visit_keys[C.DAYPART].map(daypart_hours).to_numpy(np.int64)
    visit_keys["_visit_ts"] = base + pd.to_timedelta(hours * 3600 + minutes * 60, unit="s")
    frame = shown.merge(visit_keys, on=[C.USER_ID, C.DAYPART], how="left")
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


# ================================================================================== metrics
def by_variant_metrics(
    shown: pd.DataFrame,
    clicked: np.ndarray,
    ratings: np.ndarray,
    genres: pd.DataFrame,
    niche_items: npt.ArrayLike = (),
) -> dict[str, dict[str, float | int | None]]:
    """Per variant: impressions, clicks, ctr, lists shown, mean rating, long-tail share, genres per list,
    exposed (shown) users, and impressions and clicks of the ``niche_items``
    (``deepcuts.pipelines.ab_analysis.niche_item_ids``)."""
    niche = np.isin(shown[C.ITEM_ID].to_numpy(np.int64), np.asarray(niche_items, dtype=np.int64))
    frame = shown.assign(_clicked=clicked, _rating=ratings, _niche=niche)
    exploded = genres.explode(C.GENRES).dropna() if not genres.empty else genres
    out: dict[str, dict[str, float | int | None]] = {}
    for variant in VARIANTS:
        rows = frame[frame[C.VARIANT] == variant]
        imps, clicks = len(rows), int(rows["_clicked"].sum())
        n_ratings = int(rows["_rating"].notna().sum())
        per_list = None
        if not rows.empty and not exploded.empty:
            merged = rows[[C.USER_ID, C.DAYPART, C.ITEM_ID]].merge(exploded, on=C.ITEM_ID, how="left")
            per_list = float(merged.groupby([C.USER_ID, C.DAYPART])[C.GENRES].nunique().mean())
        out[variant] = {
            "impressions": imps,
            "clicks": clicks,
            "ctr": clicks / imps if imps else None,
            "lists": int(rows.groupby([C.USER_ID, C.DAYPART]).ngroups) if imps else 0,
            "ratings": n_ratings,
            "mean_rating": float(rows["_rating"].mean()) if n_ratings else None,
            "long_tail_share": float(rows[C.IS_LONG_TAIL].astype(bool).mean()) if imps else None,
            "genres_per_list": per_list,
            "exposed_users": int(rows[C.USER_ID].nunique()),
            "niche_impressions": int(rows["_niche"].sum()),
            "niche_clicks": int((rows["_niche"] & rows["_clicked"]).sum()),
        }
    return out


def context_key(segment: str, daypart: str) -> str:
    return f"{segment}/{daypart}"


def arm_shares(treatment_visits: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Context -> arm -> share of that context's treatment visits (list impressions) on the arm."""
    out: dict[str, dict[str, float]] = {}
    if treatment_visits.empty:
        return out
    counts = treatment_visits.groupby([C.SEGMENT, C.DAYPART, C.ARM]).size()
    for (segment, daypart), per_arm in counts.groupby(level=[0, 1]):
        total = float(per_arm.sum())
        out[context_key(segment, daypart)] = {
            arm: float(n) / total for (_, _, arm), n in sorted(per_arm.items())
        }
    return out


@dataclass(frozen=True)
class TruthMetrics:
    best_arm: dict[str, str]
    best_arm_share: dict[str, float]
    expected_reward: dict[str, dict[str, float]]
    regret: float


def truth_metrics(
    world: SimWorld,
    treatment_visits: pd.DataFrame,
    arm_lists: pd.DataFrame,
    population: pd.DataFrame,
    day_index: int,
) -> TruthMetrics:
    """True best arm per context, the share of treatment traffic on it, and the night's regret.

    ``treatment_visits``: ``user_id``, ``daypart``, ``segment``, ``arm`` (served) per treatment visit;
    ``arm_lists``: re-ranked lists of every bandit arm (``user_id``, ``arm``, ``rank``, ``item_id``);
    ``population``: ``user_id``, ``daypart``, ``segment`` of every treatment assignment. The value of arm
    ``a`` in context ``c`` is the mean expected reward of its lists over the population of ``c``, each
    (user, daypart) weighted by its visit probability (``SimWorld.visit_weight``): the traffic the
    context will get, not only the handful of visits of one night, so the best arm is not noise.
    """
    if treatment_visits.empty or arm_lists.empty or population.empty:
        return TruthMetrics({}, {}, {}, 0.0)
    pop = population[[C.USER_ID, C.DAYPART, C.SEGMENT]].drop_duplicates([C.USER_ID, C.DAYPART])
    pop = pop.assign(_weight=world.visit_weight(pop, day_index))
    lists = pop[[C.USER_ID, C.DAYPART, C.SEGMENT]].merge(arm_lists, on=C.USER_ID)
    reward = world.expected_reward(lists, day_index).rename("_reward").reset_index()
    per_pair = pop.merge(reward, on=[C.USER_ID, C.DAYPART], how="inner")
    per_pair["_wr"] = per_pair["_weight"] * per_pair["_reward"]
    sums = per_pair.groupby([C.SEGMENT, C.DAYPART, C.ARM])[["_wr", "_weight"]].sum()
    best_arm: dict[str, str] = {}
    expected: dict[str, dict[str, float]] = {}
    for (segment, daypart), per_arm in sums.groupby(level=[0, 1]):
        key = context_key(segment, daypart)
        values = {
            arm: float(row["_wr"] / row["_weight"]) if row["_weight"] > 0 else 0.0
            for (_, _, arm), row in per_arm.iterrows()
        }
        expected[key] = dict(sorted(values.items()))
        best_arm[key] = max(sorted(values), key=lambda a: values[a])

    visits = treatment_visits[[C.USER_ID, C.DAYPART, C.SEGMENT, C.ARM]].rename(columns={C.ARM: "_served"})
    visits = visits.assign(
        _ctx=[context_key(s, d) for s, d in zip(visits[C.SEGMENT], visits[C.DAYPART], strict=True)]
    )
    visits["_best"] = visits["_ctx"].map(best_arm)
    share = visits.assign(_on=visits["_served"] == visits["_best"]).groupby("_ctx")["_on"].mean()
    # pseudo-regret of each visit: value of the context's best arm minus value of the served arm (the
    # bandit chooses per context, so the per-context arm values are what it can learn; never negative)
    best_value = np.array(
        [expected.get(c, {}).get(a, np.nan) for c, a in zip(visits["_ctx"], visits["_best"], strict=True)]
    )
    served_value = np.array(
        [expected.get(c, {}).get(a, np.nan) for c, a in zip(visits["_ctx"], visits["_served"], strict=True)]
    )
    regret = float(np.nansum(best_value - served_value))
    return TruthMetrics(best_arm, {k: float(v) for k, v in sorted(share.items())}, expected, regret)


# ================================================================================== the loop
def planted_arms(settings: Settings) -> dict[str, str]:
    """A planted arm per context, drawn from the master seed among the bandit arms (validation only)."""
    from deepcuts.models.context import CONTEXTS

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
        return SyntheticWorld(world_dir, sim.rating_probability, planted, sim.planted_arm_lift)
    if settings.source.dataset == "synthetic":
        raise ValueError("--world movielens needs a MovieLens dataset (--dataset ml-100k|ml-1m|...)")
    from deepcuts.models.context import daypart_of
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


def simulate(
    settings: Settings,
    world: WorldKind,
    days: int,
    out: str | Path | None = None,
    n_shards: int | None = None,
) -> dict[str, Any]:
    """Run ``days`` nights in a closed loop; write ``out`` (sim.json) and a PNG next to it; return it."""
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    started = time.monotonic()
    sim_world = prepare_world(settings, world)
    lake = Lake(settings.home)
    first = sim_world.first_night
    record: dict[str, Any] = {
        "world": world,
        "days": days,
        "seed": settings.seed,
        "first_night": first.isoformat(),
        "home": settings.home,
        "planted_arms": getattr(sim_world, "planted", {}) or None,
        "planted_arm_lift": settings.simulator.planted_arm_lift if world == "synthetic" else None,
        # the scoreboard's targets (deepcuts.pipelines.ab_analysis.targets), drawn as bands by the plot
        "targets": {
            name: {"low": t.low, "high": t.high, "text": t.text} for name, t in targets(settings).items()
        },
        "nights": [],
    }
    with step_pool(resolve_workers(settings.simulator.workers)) as pool:
        _simulate_nights(settings, sim_world, lake, record, first, days, out, n_shards, pool)
    record["total_seconds"] = round(time.monotonic() - started, 1)
    record["summary"] = summarise(record)
    if out is not None:
        path = Path(out)
        _write_json_atomic(path, record)
        if settings.simulator.plot:
            record["plot"] = str(plot_simulation(record, path.with_suffix(".png")))
            _write_json_atomic(path, record)
    return record


def _simulate_nights(
    settings: Settings,
    sim_world: SimWorld,
    lake: Lake,
    record: dict[str, Any],
    first: date,
    days: int,
    out: str | Path | None,
    n_shards: int | None,
    pool: Executor | None,
) -> None:
    live: tuple[date, str] | None = None
    cumulative_regret = 0.0
    for k in progress(range(1, days + 1), desc="simulated nights", logger=log, log_every_s=0.0):
        run_date = first + timedelta(days=k - 1)
        t0 = time.monotonic()
        night, live, publish_note = _run_night_keep_live(settings, run_date, n_shards, live, pool)
        if live is None:
            raise RuntimeError(
                f"night {k} ({run_date}): nothing has ever been published, so the app has no lists to "
                "serve; see the publish gate above (or set simulator.acknowledge_critical_alerts)"
            )
        entry = serve_day(settings, sim_world, k, run_date, live)
        live = (live[0], entry["list_version_end"])  # an intraday refresh may have moved it
        if entry.get("regret") is not None:
            cumulative_regret += entry["regret"]
            entry["cumulative_regret"] = cumulative_regret
        entry["ab"] = _ab_entry(lake, run_date)
        entry["publish"] = publish_note
        entry["skipped_steps"] = night.get("skipped", {})
        entry["step_seconds"] = night.get("seconds", {})
        entry["night_seconds"] = round(time.monotonic() - t0, 3)
        record["nights"].append(json_safe(entry))
        log.info(
            "night %d/%d %s: CTR control %s treatment %s, verdict %s",
            k,
            days,
            run_date,
            _fmt(entry["ctr"][Variant.CONTROL.value]),
            _fmt(entry["ctr"][Variant.TREATMENT.value]),
            entry["ab"].get("verdict"),
        )
        if out is not None:
            _write_json_atomic(Path(out), record)  # partial results survive an interrupted run


def serve_day(
    settings: Settings, world: SimWorld, night: int, run_date: date, live: tuple[date, str]
) -> dict[str, Any]:
    """Serve day ``run_date + 1`` with the live lists, let the users respond, land their feedback.

    ``night`` is ``k`` (the world's day index of the served day); ``live`` is (run date, list_version)
    of the lists the app serves (:func:`live_lists` reads it from the serving DB). Writes
    ``landing/feedback_events(run_date + 1)`` and returns the night's record without the A/B entry and
    timings; ``regret`` is the night's own regret (the caller accumulates it). The Airflow demo calls
    this between DAG runs; :func:`simulate` calls it after ``run_night``.
    """
    lake = Lake(settings.home)
    served_day = run_date + timedelta(days=1)
    trajectory: list[dict[str, Any]] = []
    if settings.simulator.refreshes_per_day > 1:
        shown, visits, clicked, ratings, events, live_end = _serve_in_slots(
            settings, world, lake, night, served_day, live, trajectory
        )
    else:
        live_end = live
        shown, visits = _serve(lake, world, live, night, served_day, settings)
        clicked, ratings = world.respond(
            shown, night, served_day, rng_for(settings.seed, served_day, "sim/respond")
        )
        events = feedback_events(
            shown,
            clicked,
            ratings,
            served_day,
            {d: start for d, (start, _) in daypart_hours(settings.bandit.daypart_starts).items()},
            rng_for(settings.seed, served_day, "sim/times"),
        )
        lake.write_table(Dataset.LANDING_FEEDBACK, served_day, events)
    items = _genres(lake, run_date)
    niche = niche_item_ids(items, settings.rerank.niche_genres)
    metrics = by_variant_metrics(shown, clicked, ratings, items, niche)
    treatment = shown[shown[C.VARIANT] == Variant.TREATMENT.value].drop_duplicates([C.USER_ID, C.DAYPART])
    entry: dict[str, Any] = {
        "night": night,
        "run_date": run_date.isoformat(),
        "served_day": served_day.isoformat(),
        "live_run_date": live[0].isoformat(),
        "list_version": live[1],
        "list_version_end": live_end[1],
        "visits": len(visits),
        "visits_without_list": int(len(visits) - shown.groupby([C.USER_ID, C.DAYPART]).ngroups),
        "events": len(events),
    }
    for name in (
        "impressions",
        "clicks",
        "ctr",
        "lists",
        "mean_rating",
        "long_tail_share",
        "genres_per_list",
        "exposed_users",
        "niche_impressions",
        "niche_clicks",
    ):
        entry[name] = {v: metrics[v][name] for v in VARIANTS}
    entry["arm_share"] = arm_shares(treatment)
    entry["context_visits"] = {
        context_key(seg, dp): int(n)
        for (seg, dp), n in treatment.groupby([C.SEGMENT, C.DAYPART]).size().items()
    }
    if world.has_truth:
        truth = truth_metrics(
            world, treatment, _arm_lists(lake, live[0], settings), _population(lake, live[0]), night
        )
        entry["best_arm"] = truth.best_arm
        entry["best_arm_share"] = truth.best_arm_share
        entry["best_arm_probability"] = _best_arm_probability(lake, live, truth.best_arm)
        # the policy in force when the day ends (the last refresh's; the night's without refreshes)
        entry["best_arm_probability_end"] = _best_arm_probability(lake, live_end, truth.best_arm)
        for step in trajectory:
            probs = _best_arm_probability(lake, (live[0], step["list_version"]), truth.best_arm)
            step["min_best_arm_probability"] = min(probs.values(), default=None)
        entry["expected_reward"] = truth.expected_reward
        entry["regret"] = truth.regret
    else:
        entry["best_arm_share"] = None
        entry["best_arm_probability"] = None
        entry["best_arm_probability_end"] = None
        entry["regret"] = None
        entry["cumulative_regret"] = None
    if trajectory:
        entry["intraday"] = trajectory
    return entry


def _serve_in_slots(
    settings: Settings,
    world: SimWorld,
    lake: Lake,
    night: int,
    served_day: date,
    live: tuple[date, str],
    trajectory: list[dict[str, Any]],
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame, tuple[date, str]]:
    """Serve ``served_day`` in ``simulator.refreshes_per_day`` slots of whole hours: the visits of a
    slot see the version live at its start, their feedback lands as ``landing/feedback_events``
    part ``slot-NNNN``, then an intraday refresh (:func:`deepcuts.pipelines.intraday.refresh`) may publish a
    new version for the next slot. No refresh after the last slot (the night runs next) nor after a slot
    without visits (nothing new to learn). Appends one entry per refresh to ``trajectory``; returns the
    day's shown rows, visits, clicks, ratings and events (concatenated) and the version live at its end.
    """
    from deepcuts.pipelines import intraday
    from deepcuts.pipelines.publish import PublishRejectedError

    n = settings.simulator.refreshes_per_day
    refresh_settings = settings.model_copy(
        update={"intraday": settings.intraday.model_copy(update={"refreshes_per_day": n})}
    )
    hours = {d: start for d, (start, _) in daypart_hours(settings.bandit.daypart_starts).items()}
    visits = world.visits(night, served_day, rng_for(settings.seed, served_day, "sim/visits"))
    slot_of = visits[C.DAYPART].map(hours).to_numpy(np.int64) * n // 24
    shown_parts, clicked_parts, rating_parts, event_parts = [], [], [], []
    for slot in range(n):
        part = intraday.slot_part(slot)
        mine = visits[slot_of == slot]
        if mine.empty:
            continue
        shown = _shown_rows(lake, mine, live)
        clicked, ratings = world.respond(
            shown, night, served_day, rng_for(settings.seed, served_day, f"sim/respond/{part}")
        )
        events = feedback_events(
            shown,
            clicked,
            ratings,
            served_day,
            hours,
            rng_for(settings.seed, served_day, f"sim/times/{part}"),
        )
        lake.write_table(Dataset.LANDING_FEEDBACK, served_day, events, part=part)
        shown_parts.append(shown)
        clicked_parts.append(clicked)
        rating_parts.append(ratings)
        event_parts.append(events)
        if slot == n - 1:
            break
        try:
            out = intraday.refresh(refresh_settings, served_day, slot)
        except PublishRejectedError as exc:
            log.warning(
                "served day %s %s: intraday publish rejected, the lists stay: %s", served_day, part, exc
            )
            trajectory.append({"slot": slot, "status": "rejected", "list_version": live[1]})
            continue
        pub = out["publish"]
        if pub["status"] in ("published", "unchanged"):
            live = (date.fromisoformat(pub["run_date"]), str(pub["list_version"]))
        trajectory.append(
            {
                "slot": slot,
                "events": out["ingest"]["events"],
                "trials": out["update"]["trials"],
                "status": pub["status"],
                "list_version": live[1],
            }
        )
    if not shown_parts:
        empty = _shown_rows(lake, visits.iloc[:0], live)
        return empty, visits, np.zeros(0, bool), np.zeros(0), FEEDBACK_SCHEMA.empty_table().to_pandas(), live
    return (
        pd.concat(shown_parts, ignore_index=True),
        visits,
        np.concatenate(clicked_parts),
        np.concatenate(rating_parts),
        pd.concat(event_parts, ignore_index=True),
        live,
    )


def live_lists(settings: Settings) -> tuple[date, str] | None:
    """(run date, list_version) of the version the serving DB's views point at, or None."""
    from deepcuts.pipelines import serving

    engine = serving.serving_engine(settings, writer=True)  # ensure_schema may create the empty schema
    try:
        serving.ensure_schema(engine)
        with engine.connect() as conn:
            info = serving.live_version(conn)
    finally:
        engine.dispose()
    if info is None or info.list_version is None:
        return None
    return info.run_date, info.list_version


def _run_night_keep_live(
    settings: Settings,
    run_date: date,
    n_shards: int | None,
    live: tuple[date, str] | None,
    pool: Executor | None = None,
) -> tuple[dict[str, Any], tuple[date, str] | None, dict[str, Any]]:
    """Run the night; return its result, the (run date, list version) now live, and a publish note.

    The steps before publish run through ``run_night``; publish is called here so that a rejection can
    be handled as production would: yesterday's lists stay live. With
    ``simulator.acknowledge_critical_alerts`` the simulated operator first acknowledges the night's
    alerts (``deepcuts.pipelines.serving.acknowledge_alerts``, the documented operator route) and publishes
    again; a rejection by a data gate stands. The steps after publish (report) run last.
    """
    from deepcuts.pipelines.nightly import STEP_NAMES, STEPS, resolve

    skip = list(settings.simulator.skip_steps)
    cut = STEP_NAMES.index("publish")
    before, after = STEP_NAMES[:cut], STEP_NAMES[cut + 1 :]
    night = run_night(settings, run_date, n_shards, skip=[*skip, *STEP_NAMES[cut:]], pool=pool)
    for name in STEP_NAMES[cut:]:
        if name not in skip:  # they run below
            night["skipped"].pop(name, None)
    publish = resolve(STEPS[cut])
    if "publish" in skip:
        rest = run_night(settings, run_date, n_shards, skip=[*skip, *before])
        _merge_night(night, rest)
        return night, (run_date, f"{run_date.isoformat()}.v0"), {"status": "not run"}

    from deepcuts.pipelines.publish import PublishRejectedError

    t0 = time.monotonic()
    note: dict[str, Any]
    new_live = live
    try:
        pub = publish(settings, run_date)
        note = {"status": pub.get("status"), "version": pub.get("version")}
        if pub.get("status") in ("published", "unchanged"):
            new_live = (run_date, str(pub["list_version"]))
    except PublishRejectedError as exc:
        note = {"status": "rejected", "detail": str(exc)}
        if settings.simulator.acknowledge_critical_alerts:
            new_live = _acknowledge_and_publish(settings, run_date, note, live)
        else:
            log.warning("night %s: publish rejected, yesterday's lists stay live: %s", run_date, exc)
    night["seconds"]["publish"] = round(time.monotonic() - t0, 3)
    night["results"]["publish"] = note
    if any(step not in skip for step in after):
        _merge_night(night, run_night(settings, run_date, n_shards, skip=[*skip, *before, "publish"]))
    return night, new_live, note


def _acknowledge_and_publish(
    settings: Settings, run_date: date, note: dict[str, Any], live: tuple[date, str] | None
) -> tuple[date, str] | None:
    from deepcuts.pipelines import serving
    from deepcuts.pipelines.publish import PublishRejectedError, publish

    engine = serving.serving_engine(settings, writer=True)
    try:
        note["acknowledged_alerts"] = serving.acknowledge_alerts(engine, run_date, by="simulator")
    finally:
        engine.dispose()
    try:
        pub = publish(settings, run_date)
    except PublishRejectedError as again:
        log.warning("night %s: publish rejected even after acknowledging alerts: %s", run_date, again)
        note["detail"] = str(again)
        return live
    log.warning(
        "night %s: publish was rejected (%s); the simulated operator acknowledged %d alert(s) and published",
        run_date,
        note["detail"],
        note["acknowledged_alerts"],
    )
    note.update(status="published after acknowledging alerts", version=pub.get("version"))
    return (run_date, str(pub["list_version"]))


def _merge_night(night: dict[str, Any], rest: dict[str, Any]) -> None:
    """Add a later ``run_night`` call's results; a step keeps the first reason it was skipped for."""
    night["results"].update(rest["results"])
    night["seconds"].update(rest["seconds"])
    for name, reason in rest["skipped"].items():
        if name not in night["results"] and name not in night["skipped"]:
            night["skipped"][name] = reason


def _serve(
    lake: Lake, world: SimWorld, live: tuple[date, str], k: int, served_day: date, settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shown rows (one per position of every visit that has a live list) and all visits."""
    visits = world.visits(k, served_day, rng_for(settings.seed, served_day, "sim/visits"))
    return _shown_rows(lake, visits, live), visits


def _live_source(lake: Lake, live: tuple[date, str]) -> tuple[date, list[str] | None]:
    """Where the lake holds the tables of the live version: (partition, None) for a nightly publish of
    that run date, (day after it, [slot part]) for an intraday refresh (pipelines/intraday.py)."""
    from deepcuts.pipelines.intraday import read_summaries, slot_part

    live_date, version = live
    day = live_date + timedelta(days=1)
    for slot, steps in reversed(read_summaries(lake, day).items()):
        if steps.get("publish", {}).get("list_version") == version:
            return day, [slot_part(slot)]
    return live_date, None


def _read_live(lake: Lake, live: tuple[date, str], dataset: Dataset, columns: list[str]) -> pd.DataFrame:
    intraday_of = {
        Dataset.SERVED_LISTS: Dataset.INTRADAY_SERVED_LISTS,
        Dataset.ASSIGNMENTS: Dataset.INTRADAY_ASSIGNMENTS,
        Dataset.BANDIT_POLICY: Dataset.INTRADAY_POLICY,
    }
    key, parts = _live_source(lake, live)
    if parts is None:
        return lake.read_df(dataset, key, columns=columns)
    return lake.read_df(intraday_of[dataset], key, parts=parts, columns=columns)


def _shown_rows(lake: Lake, visits: pd.DataFrame, live: tuple[date, str]) -> pd.DataFrame:
    """One row per position of every visit that has a list in the live version."""
    live_date, version = live
    lists = _read_live(
        lake,
        live,
        Dataset.SERVED_LISTS,
        [C.USER_ID, C.DAYPART, C.RANK, C.ITEM_ID, C.ARM, C.VARIANT, C.IS_LONG_TAIL],
    )
    assignments = _read_live(lake, live, Dataset.ASSIGNMENTS, [C.USER_ID, C.DAYPART, C.SEGMENT, C.PROPENSITY])
    shown = (
        visits.merge(lists, on=[C.USER_ID, C.DAYPART], how="inner")
        .merge(assignments, on=[C.USER_ID, C.DAYPART], how="left")
        .sort_values([C.USER_ID, C.DAYPART, C.RANK], ignore_index=True)
    )
    shown[C.LIST_VERSION] = version
    if shown[C.PROPENSITY].isna().any():
        raise ValueError(f"served_lists({live_date}) has (user, daypart) pairs without an assignment")
    return shown


def _arm_lists(lake: Lake, live_date: date, settings: Settings) -> pd.DataFrame:
    """Re-ranked lists of every bandit arm for the live run date (for the truth metrics)."""
    try:
        frame = lake.read_df(Dataset.RERANKED, live_date, columns=[C.USER_ID, C.ITEM_ID, C.RANK, C.ARM])
    except MissingDataError:
        return pd.DataFrame(columns=[C.USER_ID, C.ITEM_ID, C.RANK, C.ARM])
    keep = frame[C.ARM].isin(settings.bandit.arms) & (frame[C.RANK] <= settings.rerank.list_length)
    return frame[keep].reset_index(drop=True)


def _best_arm_probability(lake: Lake, live: tuple[date, str], best_arm: dict[str, str]) -> dict[str, float]:
    """Context -> the live policy's selection probability of the context's true best arm: the share of
    the context's traffic the policy puts there, free of the noise of one night's few visits."""
    cols = [C.SEGMENT, C.DAYPART, C.ARM, C.SELECTION_PROBABILITY]
    try:
        policy = _read_live(lake, live, Dataset.BANDIT_POLICY, cols)
    except MissingDataError:
        return {}
    prob = {
        (context_key(seg, dp), arm): float(p)
        for seg, dp, arm, p in policy[cols].itertuples(index=False, name=None)
    }
    return {ctx: prob.get((ctx, arm), 0.0) for ctx, arm in sorted(best_arm.items())}


def _population(lake: Lake, live_date: date) -> pd.DataFrame:
    """Treatment assignments (``user_id``, ``daypart``, ``segment``) of the live run date."""
    frame = lake.read_df(Dataset.ASSIGNMENTS, live_date, columns=[C.USER_ID, C.DAYPART, C.SEGMENT, C.VARIANT])
    return frame[frame[C.VARIANT] == Variant.TREATMENT.value].drop(columns=[C.VARIANT])


def _genres(lake: Lake, run_date: date) -> pd.DataFrame:
    for day in (run_date, lake.latest_before(Dataset.ITEMS, run_date)):
        if day is not None and lake.has(Dataset.ITEMS, day):
            return lake.read_df(Dataset.ITEMS, day, columns=[C.ITEM_ID, C.GENRES])
    return pd.DataFrame(columns=[C.ITEM_ID, C.GENRES])


def _ab_entry(lake: Lake, run_date: date) -> dict[str, Any]:
    from deepcuts.pipelines.ab_analysis import VERDICT_FILE

    keys = ("verdict", "p_value", "lift", "ci_low", "ci_high", "srm_p_value", "scoreboard")
    if not lake.exists(Dataset.AB_RESULTS, run_date, VERDICT_FILE):
        return dict.fromkeys(keys)
    verdict = lake.read_json(Dataset.AB_RESULTS, run_date, VERDICT_FILE)
    return {k: verdict.get(k) for k in keys}


def summarise(record: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers: CTR over the run, best-arm share at night 14 and at the end, regret growth."""
    nights = record["nights"]
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        imps = sum(n["impressions"][variant] or 0 for n in nights)
        clicks = sum(n["clicks"][variant] or 0 for n in nights)
        out[f"ctr_{variant}"] = clicks / imps if imps else None
    if nights and nights[-1].get("best_arm_share") is not None:
        for label, idx in (("night_14", min(14, len(nights)) - 1), ("last_night", len(nights) - 1)):
            night = nights[idx]
            out[f"best_arm_share_{label}"] = {
                **_headline(night["best_arm_share"], idx + 1),
                "traffic_weighted": json_safe(_weighted_share(night)),
            }
            out[f"best_arm_probability_{label}"] = _headline(night.get("best_arm_probability"), idx + 1)
        regret = [n["regret"] for n in nights]
        half = len(regret) // 2
        if half:
            out["regret_first_half_per_night"] = float(np.mean(regret[:half]))
            out["regret_second_half_per_night"] = float(np.mean(regret[half:]))
        out["cumulative_regret"] = nights[-1]["cumulative_regret"]
    out["final_ab"] = nights[-1]["ab"] if nights else None
    # the last night's scoreboard as ab_analysis computed it (cumulative lift, niche ratio and rating;
    # list metrics of the lists users saw that night), and per metric the nights it was met
    out["scoreboard"] = (nights[-1]["ab"] or {}).get("scoreboard") if nights else None
    boards = [(n["night"], (n.get("ab") or {}).get("scoreboard") or {}) for n in nights]
    out["scoreboard_nights_met"] = {
        name: [k for k, board in boards if (board.get(name) or {}).get("met")] for name in SCOREBOARD_METRICS
    }
    for key in ("niche_impressions", "niche_clicks"):
        out[key] = {v: sum(n.get(key, {}).get(v) or 0 for n in nights) for v in VARIANTS}
    return out


def _headline(values: dict[str, float] | None, night: int) -> dict[str, Any]:
    """Min, mean and the number of contexts at or above 70% of a context -> share mapping."""
    values = values or {}
    return {
        "night": night,
        "min": min(values.values()) if values else None,
        "mean": float(np.mean(list(values.values()))) if values else None,
        "contexts_at_or_above_70pct": sum(v >= 0.7 for v in values.values()),
        "contexts": len(values),
    }


def plot_simulation(record: dict[str, Any], path: Path) -> Path:
    """A 2x2 PNG: CTR by variant, best-arm share, cumulative regret, long-tail share and A/B p-value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nights = record["nights"]
    x = [n["night"] for n in nights]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0, 0]
    for variant in VARIANTS:
        ax.plot(x, [_nan(n["ctr"][variant]) for n in nights], marker=".", label=variant)
    ax.set(title="CTR per impression", xlabel="night", ylabel="clicks / impressions")
    ax.legend()
    ax = axes[0, 1]
    if nights and nights[0].get("best_arm_share") is not None:
        contexts = sorted({c for n in nights for c in (n["best_arm_share"] or {})})
        for ctx in contexts:
            ax.plot(x, [_nan((n["best_arm_share"] or {}).get(ctx)) for n in nights], lw=0.8, alpha=0.6)
        mean = [np.nanmean(list((n["best_arm_share"] or {}).values()) or [np.nan]) for n in nights]
        ax.plot(x, mean, color="grey", lw=1.5, ls="--", label="mean over contexts")
        ax.plot(x, [_weighted_share(n) for n in nights], color="black", lw=2, label="traffic-weighted")
        ax.axhline(0.7, color="grey", ls=":", lw=1)
        ax.legend()
    ax.set(title="treatment traffic on the true best arm (per context)", xlabel="night", ylim=(0, 1.02))
    ax = axes[1, 0]
    if nights and nights[0].get("cumulative_regret") is not None:
        ax.plot(x, [n["cumulative_regret"] for n in nights], marker=".")
    ax.set(title="cumulative regret (expected list rewards)", xlabel="night")
    ax = axes[1, 1]
    for variant in VARIANTS:
        ax.plot(
            x, [_nan(n["long_tail_share"][variant]) for n in nights], marker=".", label=f"long tail {variant}"
        )
    band = (record.get("targets") or {}).get("long_tail_share")
    if band:
        ax.axhspan(band["low"], band["high"], color="tab:green", alpha=0.15, lw=0, label="target band")
    ax.set(title="long-tail share of shown items; A/B p-value", xlabel="night", ylim=(0, 1.02))
    ax.set_ylabel("long-tail share")
    ax2 = ax.twinx()
    ax2.plot(x, [_nan(n["ab"]["p_value"]) for n in nights], color="black", ls=":", label="mSPRT p")
    ax2.set(ylim=(0, 1.02), ylabel="always-valid p")
    ax.legend(loc="upper left")
    fig.suptitle(f"deepcuts simulation: {record['world']} world, seed {record['seed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _weighted_share(night: dict[str, Any]) -> float:
    """Best-arm share over all treatment visits of the night (contexts weighted by their visits)."""
    shares, visits = night.get("best_arm_share") or {}, night.get("context_visits") or {}
    total = sum(visits.get(c, 0) for c in shares)
    return sum(v * visits.get(c, 0) for c, v in shares.items()) / total if total else math.nan


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False, allow_nan=False))
    tmp.replace(path)


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
