"""Build a synthetic world: catalog, users, rating history and the ground truth a simulator needs.

Everything is drawn from generators seeded by ``derive_seed(world.seed, None, "world/<component>")``;
the history is generated in blocks of ``users_per_block`` users, each with its own derived seed, so the
output bytes depend only on the settings (never on memory or timing) and memory stays bounded by one
block x the catalog. Files (see docs/synthetic-world.md):

``items.parquet``, ``interactions.parquet`` (canonical contracts), ``truth/items.parquet``,
``truth/users.parquet``, ``truth/user_factors.npy``, ``truth/item_factors.npy``, ``truth/model.json``
and ``world.json`` (written last: a folder without it is not a finished world).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, fields, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import expit

from deepcuts.contracts import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, C
from deepcuts.formulas import daypart_hours
from deepcuts.progress import get_logger, progress
from deepcuts.seeds import rng_for
from deepcuts.settings import WorldSettings
from pipelines.storage import conform
from pipelines.world.model import DAYPARTS, FIRST_VISIT_DAY, SEGMENTS, WorldModel
from pipelines.world.names import GENRE_NAMES, GENRES, NICHE_GENRES, make_titles

log = get_logger(__name__)

WORLD_FORMAT_VERSION = 1
#: Share of exposure held by the head; items outside it are the tail (as in ``arms.long_tail``).
HEAD_SHARE = 0.8
#: Quality quantile above which a tail item is a hidden gem.
GEM_QUALITY_QUANTILE = 0.8
#: Users sampled (first blocks) for the population mean rating of each item in the truth.
POPULATION_SAMPLE_USERS = 256
#: Rows buffered before a Parquet row group is written.
ROW_GROUP_ROWS = 500_000
#: Ratings a new user has at most, and at least for a power user (cf. bandit.new_max_ratings, ...).
NEW_MAX_RATINGS = 4
POWER_MIN_RATINGS = 100

PARQUET_COMPRESSION = "zstd"


@dataclass
class _Items:
    genres: list[list[str]]
    membership: npt.NDArray[np.float64]  # (items, genres) 0/1
    years: npt.NDArray[np.int32]
    titles: list[str]
    quality: npt.NDArray[np.float64]
    exposure: npt.NDArray[np.float64]  # shares, sum 1
    exposure_rank: npt.NDArray[np.int64]  # 1 = most exposed
    novelty: npt.NDArray[np.float64]  # 2 (rank - 1/2) / n - 1, in [-1, 1]
    is_head: npt.NDArray[np.bool_]
    hidden_gem: npt.NDArray[np.bool_]
    niche: npt.NDArray[np.bool_]
    factors: npt.NDArray[np.float64]  # (items, K)


@dataclass
class _Users:
    segment: npt.NDArray[np.int64]  # index into SEGMENTS
    taste: npt.NDArray[np.float64]  # (users, genres) Dirichlet weights
    factors: npt.NDArray[np.float64]  # (users, K)
    bias: npt.NDArray[np.float64]
    appetite: npt.NDArray[np.float64]  # c_u
    habits: npt.NDArray[np.float64]  # (users, 4) daypart probabilities
    sessions: npt.NDArray[np.float64]  # visits per day
    history_exponent: npt.NDArray[np.float64]  # e_u
    n_ratings: npt.NDArray[np.int64]
    join_day: npt.NDArray[np.float64]  # days since the history start
    last_day: npt.NDArray[np.float64]


# ------------------------------------------------------------------------------------------------ API
def generate_world(out_dir: str | Path, settings: WorldSettings | None = None) -> dict[str, Any]:
    """Generate the world described by ``settings`` into ``out_dir``; returns the ``world.json`` summary.

    Same settings -> same bytes. Memory: one block of ``users_per_block`` x ``items`` floats at a time
    plus the per-user and per-item arrays.
    """
    settings = settings or WorldSettings()
    out = Path(out_dir).expanduser()
    (out / "truth").mkdir(parents=True, exist_ok=True)
    # A crash must not leave an old world.json next to new, half-written files.
    (out / "world.json").unlink(missing_ok=True)
    start = date.fromisoformat(settings.start_date)
    if settings.items < 20:
        raise ValueError(f"world.items must be >= 20, got {settings.items}")

    model = WorldModel(rating_step=float(settings.rating_step))
    genre_vectors = rng_for(settings.seed, None, "world/genre-vectors").normal(
        size=(len(GENRES), settings.factors)
    )
    items = _make_items(settings, start, genre_vectors)
    users = _make_users(settings, model, genre_vectors)
    signups = _make_signups(settings, model, genre_vectors)
    model = _calibrate(settings, model, users, items, signups)

    counts, rating_sums, population, onboarding = _write_history(
        out, settings, model, users, items, start, signups
    )
    everyone = _concat_users(users, signups)

    _write_parquet(out / "items.parquet", _items_table(items, settings))
    _write_parquet(
        out / "truth" / "items.parquet", _truth_items_table(items, counts, rating_sums, population)
    )
    _write_parquet(out / "truth" / "users.parquet", _truth_users_table(everyone, settings, start))
    _write_npy(out / "truth" / "user_factors.npy", everyone.factors.astype(np.float32))
    _write_npy(out / "truth" / "item_factors.npy", items.factors.astype(np.float32))
    _write_json(out / "truth" / "model.json", model.to_json())

    history_start = start - timedelta(days=settings.history_days)
    seg_counts = np.bincount(users.segment, minlength=3)
    summary: dict[str, Any] = {
        "format_version": WORLD_FORMAT_VERSION,
        "seed": settings.seed,
        "users": settings.users,
        "items": settings.items,
        "interactions": int(counts.sum()),
        "genres": list(GENRE_NAMES),
        "niche_genres": list(NICHE_GENRES),
        "rating_scale": {"min": model.rating_min, "max": model.rating_max, "step": model.rating_step},
        "history_start": history_start.isoformat(),
        "start_date": start.isoformat(),
        "first_run_date": (start - timedelta(days=1)).isoformat(),
        "history_days": settings.history_days,
        "dayparts": daypart_hours(settings.daypart_starts),
        "segments": {s: int(seg_counts[k]) for k, s in enumerate(SEGMENTS)},
        "signups": {
            "users": len(signups.segment),
            "per_day": settings.users * settings.daily_signup_rate,
            "days": settings.signup_days,
            "first_day": start.isoformat(),
            "onboarding_ratings": onboarding,
        },
        "hidden_gems": int(items.hidden_gem.sum()),
        "head_items": int(items.is_head.sum()),
        "mean_rating": float(rating_sums.sum() / max(counts.sum(), 1)),
        "settings": settings.model_dump(mode="json"),
        "files": {
            "items": "items.parquet",
            "interactions": "interactions.parquet",
            "truth_items": "truth/items.parquet",
            "truth_users": "truth/users.parquet",
            "user_factors": "truth/user_factors.npy",
            "item_factors": "truth/item_factors.npy",
            "model": "truth/model.json",
        },
    }
    _write_json(out / "world.json", summary)
    log.info(
        "world written to %s: %d users, %d items, %d ratings, %d hidden gems",
        out,
        settings.users,
        settings.items,
        summary["interactions"],
        summary["hidden_gems"],
    )
    return summary


# --------------------------------------------------------------------------------------------- items
def _make_items(settings: WorldSettings, start: date, genre_vectors: np.ndarray) -> _Items:
    """Catalog: 1-3 genres by prevalence, years, quality, Zipf exposure, factors anchored on genres.

    Exposure: latent ``x_i = rho theta_i + sqrt(1 - rho^2) z_i - penalty * niche_i``; the item of rank
    ``r`` in decreasing ``x`` gets ``pi_i = r^-alpha / sum_j j^-alpha``.
    """
    rng = rng_for(settings.seed, None, "world/items")
    n, n_genres = settings.items, len(GENRES)
    share = np.array([s for _, s in GENRES])
    k = rng.choice([1, 2, 3], size=n, p=[0.45, 0.35, 0.20])
    # Weighted sampling without replacement (Gumbel top-k on log prevalence).
    order = np.argsort(-(np.log(share)[None, :] + rng.gumbel(size=(n, n_genres))), axis=1, kind="stable")
    membership = np.zeros((n, n_genres))
    genres: list[list[str]] = []
    for i in range(n):
        chosen = np.sort(order[i, : k[i]])
        membership[i, chosen] = 1.0
        genres.append([GENRE_NAMES[g] for g in chosen])
    g_index = {g: j for j, g in enumerate(GENRE_NAMES)}

    # Years: mostly recent (exponential age), with genre eras for Film-Noir, Western and Anime.
    year0 = start.year
    years = year0 - np.floor(rng.exponential(14.0, size=n))
    noir = membership[:, g_index["Film-Noir"]] > 0
    years[noir] = rng.integers(1940, 1959, size=int(noir.sum()))
    western = (membership[:, g_index["Western"]] > 0) & (rng.random(n) < 0.7)
    years[western] = rng.integers(1950, 1980, size=int(western.sum()))
    anime = membership[:, g_index["Anime"]] > 0
    years[anime] = np.maximum(years[anime], 1982)
    years = np.clip(years, 1920, year0).astype(np.int32)
    titles = make_titles(genres, years, rng)

    quality = rng.normal(size=n)
    niche_idx = [g_index[g] for g in NICHE_GENRES]
    niche = membership[:, niche_idx].sum(axis=1) > 0
    rho = settings.quality_exposure_corr
    latent = rho * quality + np.sqrt(1 - rho**2) * rng.normal(size=n)
    latent -= WorldModel().niche_exposure_penalty * niche
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-latent, kind="stable")] = np.arange(1, n + 1)
    exposure = rank.astype(np.float64) ** (-settings.popularity_alpha)
    exposure /= exposure.sum()
    # Novelty: the exposure rank mapped linearly onto [-1, 1] (bounded, so appetites act evenly).
    novelty = 2.0 * (rank - 0.5) / n - 1.0
    # Head: the most exposed items until HEAD_SHARE of the exposure is covered (the item crossing it too).
    by_rank = np.argsort(rank)
    before = np.cumsum(exposure[by_rank]) - exposure[by_rank]
    is_head = np.zeros(n, dtype=bool)
    is_head[by_rank[before < HEAD_SHARE]] = True
    # Hidden gems: top-quality items in the less exposed half of the catalog (all outside the head).
    hidden_gem = (quality >= np.quantile(quality, GEM_QUALITY_QUANTILE)) & ~is_head & (rank > n / 2)

    factors = membership @ genre_vectors / np.sqrt(k)[:, None] + 0.6 * rng.normal(
        size=(n, genre_vectors.shape[1])
    )
    return _Items(
        genres=genres,
        membership=membership,
        years=years,
        titles=titles,
        quality=quality,
        exposure=exposure,
        exposure_rank=rank,
        novelty=novelty,
        is_head=is_head,
        hidden_gem=hidden_gem,
        niche=niche,
        factors=factors,
    )


# --------------------------------------------------------------------------------------------- users
def _make_users(settings: WorldSettings, model: WorldModel, genre_vectors: np.ndarray) -> _Users:
    """Users: segment, genre taste (sparse Dirichlet), factors, leniency, appetite, habits, activity."""
    rng = rng_for(settings.seed, None, "world/users")
    n = settings.users
    segment = rng.choice(3, size=n, p=np.asarray(settings.segment_shares, dtype=np.float64))
    traits = _user_traits(rng, segment, model, genre_vectors)
    n_ratings = _rating_counts(settings, segment, rng)
    h = float(settings.history_days)
    join = np.empty(n)
    last = np.full(n, h)
    new, casual, power = (segment == s for s in range(3))
    recent = min(14.0, h)
    join[new] = h - rng.uniform(0.0, recent, size=int(new.sum()))
    join[power] = rng.uniform(0.0, 0.5 * h, size=int(power.sum()))
    join[casual] = rng.uniform(0.0, 0.9 * h, size=int(casual.sum()))
    last[casual] = join[casual] + rng.uniform(0.1, 1.0, size=int(casual.sum())) * (h - join[casual])
    return _Users(segment=segment, **traits, n_ratings=n_ratings, join_day=join, last_day=last)


def _user_traits(
    rng: np.random.Generator, segment: np.ndarray, model: WorldModel, genre_vectors: np.ndarray
) -> dict[str, np.ndarray]:
    """Taste, factors, leniency, appetite, daypart habits, activity and history exponent per user."""
    n = len(segment)
    share = np.array([s for _, s in GENRES])
    taste = rng.dirichlet(5.0 * share * len(share) / 4.0 + 0.05, size=n)
    factors = (taste @ genre_vectors) / np.sqrt((taste**2).sum(axis=1))[:, None]
    factors += 0.6 * rng.normal(size=factors.shape)
    bias = rng.normal(0.0, model.user_bias_sd, size=n)
    appetite = rng.normal(0.0, model.appetite_sd, size=n)
    habits = np.empty((n, 4))
    for s, name in enumerate(SEGMENTS):
        mask = segment == s
        alpha = model.daypart_concentration * np.asarray(model.daypart_habits[name])
        habits[mask] = rng.dirichlet(alpha, size=int(mask.sum()))
    rates = np.array([model.sessions_per_day[s] for s in SEGMENTS])
    sessions = rates[segment] * rng.lognormal(0.0, 0.3, size=n)
    mean_a = model.appetite_table().mean(axis=1)
    history_exponent = 1.0 - 0.3 * expit(appetite + mean_a[segment])
    return {
        "taste": taste,
        "factors": factors,
        "bias": bias,
        "appetite": appetite,
        "habits": habits,
        "sessions": sessions,
        "history_exponent": history_exponent,
    }


def _make_signups(settings: WorldSettings, model: WorldModel, genre_vectors: np.ndarray) -> _Users:
    """Users who join after the history: ``Poisson(users x daily_signup_rate)`` on each of the
    ``signup_days`` days from ``start_date`` on, drawn like new users (own seed stream, so the history
    does not depend on the sign-ups). Each rates 1..4 titles on the day they join (the sign-up flow's
    onboarding ratings, in the rating source) and visits from the day after."""
    rng = rng_for(settings.seed, None, "world/signups")
    per_day = rng.poisson(settings.users * settings.daily_signup_rate, size=settings.signup_days)
    day = np.repeat(np.arange(settings.signup_days, dtype=np.float64), per_day)
    segment = np.zeros(len(day), dtype=np.int64)  # SEGMENTS[0] = new
    traits = _user_traits(rng, segment, model, genre_vectors)
    n_ratings = rng.integers(1, NEW_MAX_RATINGS + 1, size=len(day)).astype(np.int64)
    join = float(settings.history_days) + day
    return _Users(segment=segment, **traits, n_ratings=n_ratings, join_day=join, last_day=join + 1.0)


def _rating_counts(settings: WorldSettings, segment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ratings per user: new uniform on 1..4, power ``max(100, 2.7 R LN(0, 0.35))``, casual
    ``clip(round(s Z), 5, max(99, 2R))`` with ``Z ~ LN(-0.245, 0.7)`` (mean 1) and the scale ``s``
    found by bisection so that the realised overall mean is ``R = ratings_per_user``; all capped at half
    the catalog."""
    n, r = len(segment), settings.ratings_per_user
    cap = max(1, settings.items // 2)
    sigma = 0.7
    power = np.maximum(POWER_MIN_RATINGS, np.round(2.7 * r * rng.lognormal(0.0, 0.35, size=n)))
    z = rng.lognormal(-(sigma**2) / 2, sigma, size=n)
    new = rng.integers(1, NEW_MAX_RATINGS + 1, size=n)
    casual_cap = max(POWER_MIN_RATINGS - 1, 2 * r)

    def counts_for(scale: float) -> np.ndarray:
        casual = np.clip(np.round(scale * z), 5, casual_cap)
        return np.clip(np.choose(segment, [new, casual, power]), 1, cap).astype(np.int64)

    lo, hi = 0.0, 4.0 * casual_cap
    for _ in range(60):  # the mean is non-decreasing in the scale
        mid = (lo + hi) / 2
        if counts_for(mid).mean() < r:
            lo = mid
        else:
            hi = mid
    counts = counts_for(hi)
    if abs(counts.mean() - r) > 0.05 * r:
        log.warning(
            "world: %.1f ratings per user instead of the requested %.1f: segment floors (new 1-4, casual "
            ">= 5, power >= %d) and the cap of half the catalog (%d) make the target unreachable",
            counts.mean(),
            r,
            POWER_MIN_RATINGS,
            cap,
        )
    return counts


# --------------------------------------------------------------------------------------- calibration
def _calibrate(
    settings: WorldSettings, model: WorldModel, users: _Users, items: _Items, signups: _Users
) -> WorldModel:
    """Scale user factors so that ``sd(a) = affinity_sd`` and centre ``a`` on random pairs; record the
    mean and sd of ``m`` on random pairs for the click model's standardised relevance. Measured on the
    history users; the sign-ups get the same scale (they are drawn from the same population)."""
    rng = rng_for(settings.seed, None, "world/calibration")
    n_pairs = 50_000
    u = rng.integers(0, settings.users, size=n_pairs)
    i = rng.integers(0, settings.items, size=n_pairs)
    raw = np.einsum("ij,ij->i", users.factors[u], items.factors[i])
    scale = model.affinity_sd / raw.std()
    users.factors *= scale
    signups.factors *= scale
    center = float(raw.mean() * scale)
    a = raw * scale - center
    m = model.mu + users.bias[u] + model.quality_weight * items.quality[i] + a
    return replace(model, affinity_center=center, m_center=float(m.mean()), m_scale=float(m.std()))


def latent_mean(
    model: WorldModel,
    user_factors: np.ndarray,
    user_bias: np.ndarray,
    item_factors: np.ndarray,
    item_quality: np.ndarray,
) -> np.ndarray:
    """``m = mu + b_u + quality_weight theta_i + p_u . q_i - c`` for aligned rows (vectors, not a grid)."""
    a = np.einsum("ij,ij->i", user_factors, item_factors) - model.affinity_center
    return model.mu + user_bias + model.quality_weight * item_quality + a


# ------------------------------------------------------------------------------------------- history
def _write_history(
    out: Path,
    settings: WorldSettings,
    model: WorldModel,
    users: _Users,
    items: _Items,
    start: date,
    signups: _Users,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Stream the rating history, then the sign-ups' onboarding ratings (stamped on their join days,
    after the history), to ``interactions.parquet``; returns per-item counts, rating sums and the
    population mean expected rating (over the first ``POPULATION_SAMPLE_USERS`` users) of the history,
    and the number of onboarding ratings."""
    n_users, n_items = settings.users, settings.items
    block = settings.users_per_block
    n_blocks = -(-n_users // block)
    counts = np.zeros(n_items, dtype=np.int64)
    sums = np.zeros(n_items, dtype=np.float64)
    pop_sum = np.zeros(n_items, dtype=np.float64)
    pop_n = 0
    # The choice logits of a block are one matrix product of augmented factors:
    # [ca p_u, e_u, 1] . [q_i, log pi_i, cq theta_i - ca c] = e_u log pi_i + ca a_ui + cq theta_i.
    ca = model.choice_affinity
    item_side = np.column_stack(
        [
            items.factors,
            np.log(items.exposure),
            model.choice_quality * items.quality - ca * model.affinity_center,
        ]
    ).astype(np.float32)
    origin_us = _epoch_us(start - timedelta(days=settings.history_days))
    end_us = _epoch_us(start)
    hours = daypart_hours(settings.daypart_starts)

    final = out / "interactions.parquet"
    tmp = out / ".tmp-interactions.parquet"
    buffer: list[pa.Table] = []
    buffered = 0
    onboarding = 0
    with pq.ParquetWriter(tmp, INTERACTIONS_SCHEMA, compression=PARQUET_COMPRESSION) as writer:

        def flush(force: bool) -> None:
            nonlocal buffer, buffered
            if buffer and (force or buffered >= ROW_GROUP_ROWS):
                writer.write_table(pa.concat_tables(buffer), row_group_size=ROW_GROUP_ROWS)
                buffer, buffered = [], 0

        for b in progress(range(n_blocks), desc="generating rating history", total=n_blocks):
            lo, hi = b * block, min((b + 1) * block, n_users)
            rng = rng_for(settings.seed, None, f"world/history/{b}")
            cols, ratings, rows = _choose_and_rate(model, users, items, item_side, lo, hi, rng)
            ts = _timestamps(rng, users, lo, rows, hours, origin_us, end_us)
            if pop_n < POPULATION_SAMPLE_USERS:
                pop_sum += _population_rating_sum(model, users, items, lo, hi)
                pop_n += hi - lo
            np.add.at(counts, cols, 1)
            np.add.at(sums, cols, ratings.astype(np.float64))
            buffer.append(_ratings_table(lo + rows + 1, cols, ratings, ts))
            buffered += buffer[-1].num_rows
            flush(force=False)
        flush(force=True)
        n_signups = len(signups.segment)
        for b in range(-(-n_signups // block)):
            lo, hi = b * block, min((b + 1) * block, n_signups)
            rng = rng_for(settings.seed, None, f"world/signups/{b}")
            cols, ratings, rows = _choose_and_rate(model, signups, items, item_side, lo, hi, rng)
            # Onboarding happens at a uniform time of the join day (a sign-up flow, not a habit).
            seconds = np.floor((signups.join_day[lo + rows] + rng.random(len(rows))) * 86_400.0)
            ts = origin_us + seconds.astype(np.int64) * 1_000_000
            buffer.append(_ratings_table(n_users + lo + rows + 1, cols, ratings, ts))
            onboarding += len(rows)
        flush(force=True)
    tmp.replace(final)
    return counts, sums, pop_sum / max(pop_n, 1), onboarding


def _choose_and_rate(
    model: WorldModel,
    users: _Users,
    items: _Items,
    item_side: np.ndarray,
    lo: int,
    hi: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users ``lo:hi`` each pick ``n_ratings`` items (Gumbel top-k on the choice logits) and rate them;
    returns (item indices, ratings, row within the block) aligned."""
    ca = model.choice_affinity
    user_side = np.column_stack(
        [ca * users.factors[lo:hi], users.history_exponent[lo:hi], np.ones(hi - lo)]
    ).astype(np.float32)
    keys = user_side @ item_side.T  # (B, M) choice logits
    # Gumbel top-k: log w + Gumbel = log w - log E with E ~ Exp(1) (one log, float32).
    noise = rng.standard_exponential(size=keys.shape, dtype=np.float32)
    np.maximum(noise, np.float32(1e-30), out=noise)  # a float32 draw can be exactly 0
    np.log(noise, out=noise)
    keys -= noise
    del noise
    n_u = users.n_ratings[lo:hi]
    picks = _top_k_rows(keys, n_u)  # item indices per user, a sample without replacement
    del keys
    rows = np.repeat(np.arange(hi - lo), n_u)
    cols = np.concatenate(picks)
    u_rows = lo + rows
    m = latent_mean(
        model, users.factors[u_rows], users.bias[u_rows], items.factors[cols], items.quality[cols]
    )
    return cols, model.sample_ratings(m, rng), rows


def _ratings_table(user_ids: np.ndarray, cols: np.ndarray, ratings: np.ndarray, ts: np.ndarray) -> pa.Table:
    """INTERACTIONS_SCHEMA rows ordered by (user, time, item)."""
    order = np.lexsort((cols, ts, user_ids))
    return pa.table(
        {
            C.USER_ID: pa.array(user_ids[order], pa.int64()),
            C.ITEM_ID: pa.array(cols[order] + 1, pa.int64()),
            C.RATING: pa.array(ratings[order], pa.float32()),
            C.TS: pa.array(ts[order], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        },
        schema=INTERACTIONS_SCHEMA,
    )


def _population_rating_sum(model: WorldModel, users: _Users, items: _Items, lo: int, hi: int) -> np.ndarray:
    """``sum_u E[r_ui]`` over users ``lo..hi-1`` for every item, 16 users at a time to bound memory."""
    total = np.zeros(len(items.quality))
    for a in range(lo, hi, 16):
        b = min(a + 16, hi)
        affinity = users.factors[a:b] @ items.factors.T - model.affinity_center
        m = model.mu + users.bias[a:b, None] + model.quality_weight * items.quality[None, :] + affinity
        total += model.expected_rating(m).sum(axis=0)
    return total


def _top_k_rows(keys: np.ndarray, k: np.ndarray) -> list[np.ndarray]:
    """Per row ``r``, the indices of its ``k[r]`` largest keys in decreasing key order (Gumbel top-k:
    a weighted sample without replacement with weights ``exp(logits)``)."""
    kmax = int(k.max())
    if kmax >= keys.shape[1]:
        top = np.argsort(-keys, axis=1, kind="stable")
    else:
        m = keys.shape[1]
        part = np.argpartition(keys, m - kmax, axis=1)[:, m - kmax :]  # the kmax largest, unordered
        vals = np.take_along_axis(keys, part, axis=1)
        top = np.take_along_axis(part, np.argsort(-vals, axis=1, kind="stable"), axis=1)
    return [top[r, : k[r]] for r in range(keys.shape[0])]


def _timestamps(
    rng: np.random.Generator,
    users: _Users,
    lo: int,
    rows: np.ndarray,
    hours: dict[str, tuple[int, int]],
    origin_us: int,
    end_us: int,
) -> np.ndarray:
    """A day uniform in the user's active span, a daypart from their habits, a time uniform in it."""
    u = lo + rows
    day = np.floor(users.join_day[u] + rng.random(len(u)) * (users.last_day[u] - users.join_day[u]))
    # Inverse-CDF draw of a daypart per rating from the user's habit probabilities.
    cdf = np.cumsum(users.habits[u], axis=1)
    part = (rng.random(len(u))[:, None] > cdf[:, :-1]).sum(axis=1)
    starts = np.array([hours[d][0] for d in DAYPARTS], dtype=np.float64)
    lengths = np.array([(hours[d][1] - hours[d][0]) % 24 or 24 for d in DAYPARTS], dtype=np.float64)
    hour = starts[part] + rng.random(len(u)) * lengths[part]
    seconds = np.floor((day * 24.0 + hour) * 3600.0)
    ts = origin_us + seconds.astype(np.int64) * 1_000_000
    # A night that spills past the end of the history moves back one day.
    ts = np.where(ts >= end_us, ts - 86_400_000_000, ts)
    return ts


def _epoch_us(day: date) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1000)


# --------------------------------------------------------------------------------------------- tables
def _items_table(items: _Items, settings: WorldSettings) -> pa.Table:
    table = pa.table(
        {
            C.ITEM_ID: pa.array(np.arange(1, settings.items + 1), pa.int64()),
            C.TITLE: pa.array(items.titles, pa.string()),
            C.GENRES: pa.array(items.genres, pa.list_(pa.string())),
            C.YEAR: pa.array(items.years, pa.int32()),
        }
    )
    return conform(table, ITEMS_SCHEMA, "synthetic items")


def _truth_items_table(
    items: _Items, counts: np.ndarray, sums: np.ndarray, population: np.ndarray
) -> pa.Table:
    n = len(items.quality)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return pa.table(
        {
            C.ITEM_ID: pa.array(np.arange(1, n + 1), pa.int64()),
            "quality": pa.array(items.quality, pa.float64()),
            "exposure": pa.array(items.exposure, pa.float64()),
            "exposure_rank": pa.array(items.exposure_rank, pa.int64()),
            "novelty": pa.array(items.novelty, pa.float64()),
            "is_head": pa.array(items.is_head),
            "hidden_gem": pa.array(items.hidden_gem),
            "niche": pa.array(items.niche),
            "population_mean_rating": pa.array(population, pa.float64()),
            "history_ratings": pa.array(counts, pa.int64()),
            "history_mean_rating": pa.array(mean, pa.float64(), from_pandas=True),
        }
    )


def _concat_users(a: _Users, b: _Users) -> _Users:
    """The history users followed by the sign-ups (ids ``1..users`` then ``users+1..``)."""
    return _Users(
        **{f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)]) for f in fields(_Users)}
    )


def _truth_users_table(users: _Users, settings: WorldSettings, start: date) -> pa.Table:
    n = len(users.segment)
    # A sign-up (join_day >= history_days: joined on start_date + k) first visits the day after
    # joining, i.e. day index k + 2 counted from the first run date (start_date - 1).
    h = float(settings.history_days)
    first_visit = np.where(users.join_day >= h, np.floor(users.join_day - h) + 2, 0).astype(np.int64)
    data: dict[str, pa.Array] = {
        C.USER_ID: pa.array(np.arange(1, n + 1), pa.int64()),
        C.SEGMENT: pa.array(np.asarray(SEGMENTS, dtype=object)[users.segment], pa.string()),
        "sessions_per_day": pa.array(users.sessions, pa.float64()),
        "appetite": pa.array(users.appetite, pa.float64()),
        "bias": pa.array(users.bias, pa.float64()),
        "history_exponent": pa.array(users.history_exponent, pa.float64()),
        "history_ratings": pa.array(users.n_ratings, pa.int64()),
        "join_day": pa.array(users.join_day, pa.float64()),
        "last_day": pa.array(users.last_day, pa.float64()),
        FIRST_VISIT_DAY: pa.array(first_visit, pa.int64()),
    }
    for k, d in enumerate(DAYPARTS):
        data[f"p_{d}"] = pa.array(users.habits[:, k], pa.float64())
    for g, name in enumerate(GENRE_NAMES):
        data[f"taste_{name}"] = pa.array(users.taste[:, g], pa.float32())
    return pa.table(data)


# ---------------------------------------------------------------------------------------------- files
def _write_parquet(path: Path, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=PARQUET_COMPRESSION)
    _atomic_bytes(path, buf.getvalue())


def _write_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    _atomic_bytes(path, buf.getvalue())


def _write_json(path: Path, obj: Any) -> None:
    _atomic_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _atomic_bytes(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(payload)
    tmp.replace(path)
