"""One typed settings object for the whole pipeline.

Precedence, highest first:
1. environment variables ``DEEPCUTS_<FIELD>``; nested fields use ``__``
   (``DEEPCUTS_BANDIT__DISCOUNT=0.95``, ``DEEPCUTS_RERANK__QUALITY_FLOOR=4.2``);
2. a TOML file: ``$DEEPCUTS_CONFIG`` if set, else ``./deepcuts.toml`` if it exists;
3. the defaults below.

Every component owns one section class (``SVDSettings``, ``BanditSettings`` ...), so its knobs are
typed, documented in one place and printed by ``deepcuts config``. Code never hard-codes a tunable.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from deepcuts.arms import ARMS, ArmRole, arm_names, bandit_arm_names, relevance_arm_names, unknown_arms

CONFIG_ENV_VAR = "DEEPCUTS_CONFIG"
DEFAULT_CONFIG_FILE = "deepcuts.toml"

DatasetKind = Literal["synthetic", "ml-100k", "ml-1m", "ml-latest-small", "csv"]

# The arms come from the arm registry (deepcuts/arms.py); these are its names when this module loads
# (code that must see an arm registered later, e.g. by a test, calls arm_names()).
#: The algorithms the bandit chooses between (every arm but the popularity baseline).
BANDIT_ARMS: tuple[str, ...] = bandit_arm_names()
#: Every recommender trained each night.
ALL_ARMS: tuple[str, ...] = arm_names()


class Section(BaseModel):
    """Base for settings sections: unknown keys are errors, so a typo in the TOML file is caught."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSettings(Section):
    """Where the catalog and the rating history come from."""

    dataset: DatasetKind = "synthetic"
    #: Folder holding the dataset files; for ``synthetic`` defaults to ``<home>/world``.
    path: str | None = None
    # --- `csv` loader options -----------------------------------------------------------------------
    ratings_file: str = "ratings.csv"
    sep: str = ","
    header: bool = True
    user_col: str = "user_id"
    item_col: str = "item_id"
    rating_col: str = "rating"
    #: ``None`` (or ``""``) when the file has no time column: every rating gets ``missing_timestamp``.
    timestamp_col: str | None = "timestamp"
    #: Numeric timestamps are Unix epochs in this unit; text timestamps are parsed as ISO 8601 (UTC).
    timestamp_unit: Literal["s", "ms", "us", "ns"] = "s"
    #: The fixed time given to every rating of a file without a time column.
    missing_timestamp: str = "2000-01-01T00:00:00+00:00"
    #: Column names of a headerless ratings file, in order; default "0", "1", ... (so ``user_col="0"``).
    ratings_names: tuple[str, ...] | None = None
    rating_min: float = 1.0
    rating_max: float = 5.0
    #: Empty: no items file; the catalog is the set of rated item ids (no titles, no genres).
    items_file: str = "items.csv"
    items_sep: str = ","
    items_header: bool = True
    #: Column names of a headerless items file, in order (same rule as ``ratings_names``).
    items_names: tuple[str, ...] | None = None
    item_id_col: str = "item_id"
    title_col: str = "title"
    #: ``None`` (or ``""``) when the items file has no genres column.
    genres_col: str | None = "genres"
    genre_sep: str = "|"
    encoding: str = "utf-8"
    #: Rows per chunk when streaming large delimited files.
    chunk_rows: int = Field(1_000_000, ge=1)


class WorldSettings(Section):
    """The synthetic world built by ``deepcuts generate`` (the embedded default); docs/synthetic-world.md."""

    users: int = Field(2000, ge=10)
    items: int = Field(1500, ge=20)
    #: Target mean number of ratings per user in the history (new users have 1-4, power users >= 100).
    ratings_per_user: float = Field(40.0, gt=0)
    #: The history covers the ``history_days`` days before ``start_date``; its last day is the first run date.
    history_days: int = Field(180, ge=1)
    start_date: str = "2026-01-01"
    seed: int = 7
    #: Ratings are on 1..5 in steps of ``rating_step`` (1 = integers as in ML-100k, 0.5 = halves).
    rating_step: Literal[0.5, 1.0] = 1.0
    #: Dimension of the latent taste factors.
    factors: int = Field(16, ge=2, le=128)
    #: Zipf exponent of exposure: the item of exposure rank r gets a share proportional to r^-alpha.
    popularity_alpha: float = Field(1.2, gt=0)
    #: Correlation between true quality and log exposure; low values leave room for hidden gems.
    quality_exposure_corr: float = Field(0.3, ge=-1, le=1)
    #: Shares of new / casual / power users.
    segment_shares: tuple[float, float, float] = (0.15, 0.65, 0.20)
    #: Sign-ups: on each of the ``signup_days`` days from ``start_date`` on, Poisson(``users`` x
    #: ``daily_signup_rate``) new users join (0.005: 10 a day at 2,000 users) with 1-4 onboarding ratings
    #: (stamped that day in the rating source, so the nightly ingest picks them up like any new rating)
    #: and visit from the next day. Without them the new-user segment empties within a few weeks of
    #: simulated nights as its users rate their way out of it.
    daily_signup_rate: float = Field(0.005, ge=0)
    signup_days: int = Field(60, ge=0)
    #: Users generated per random block: blocks have their own seeds, so the bytes do not depend on memory.
    users_per_block: int = Field(256, ge=1)
    #: Daypart start hours (UTC): morning, afternoon, evening, night (keep equal to bandit.daypart_starts).
    daypart_starts: tuple[int, int, int, int] = (6, 12, 18, 23)
    #: When in its daypart a simulated visit starts (the simulator's served days; the generated history is
    #: not affected): ``hourly`` = an hour of the daypart drawn from ``visit_hour_profile``, then a minute
    #: in that hour's first 45 (its clicks and ratings land in the same hour); ``daypart_start`` = a minute
    #: in the first 45 of the daypart's first hour (the only timing before 2026-11-30: every visit of a
    #: daypart fell into one hourly refresh slot). Visits, clicks and ratings are the same either way;
    #: only their timestamps differ (docs/synthetic-world.md, "Visits").
    visit_timing: Literal["hourly", "daypart_start"] = "hourly"
    #: Relative visit intensity of each UTC hour 0..23. Only the ratios between the hours of one daypart
    #: matter (how often a user visits in a daypart is their habit). Default: a streaming service's day,
    #: quiet from 2 to 5, a lunch bump, the evening peak at 21.
    visit_hour_profile: tuple[float, ...] = (
        0.6, 0.4, 0.25, 0.15, 0.1, 0.15, 0.3, 0.5, 0.6, 0.6, 0.6, 0.7,
        0.9, 0.8, 0.7, 0.7, 0.8, 0.9, 1.0, 1.2, 1.4, 1.5, 1.3, 1.0,
    )  # fmt: skip

    @model_validator(mode="after")
    def _valid_shares(self) -> WorldSettings:
        if any(s < 0 for s in self.segment_shares) or abs(sum(self.segment_shares) - 1.0) > 1e-6:
            raise ValueError(f"world.segment_shares must be >= 0 and sum to 1, got {self.segment_shares}")
        return self

    @model_validator(mode="after")
    def _valid_visit_profile(self) -> WorldSettings:
        profile = self.visit_hour_profile
        if len(profile) != 24 or any(not w >= 0 for w in profile):
            raise ValueError(
                f"world.visit_hour_profile must hold 24 weights >= 0 (UTC hours 0..23), got {list(profile)}"
            )
        starts = self.daypart_starts
        for k, start in enumerate(starts):
            end = starts[(k + 1) % len(starts)]
            hours = [(start + h) % 24 for h in range((end - start) % 24 or 24)]
            if sum(profile[h] for h in hours) <= 0:
                raise ValueError(
                    f"world.visit_hour_profile: the hours {hours} of daypart {k + 1} all have weight 0; "
                    "give at least one of them a positive weight"
                )
        return self


class IngestSettings(Section):
    """Validation thresholds for the nightly ingest."""

    #: Events stamped later than the end of the run date plus this skew are "in the future".
    future_skew_minutes: int = Field(15, ge=0)
    #: Feedback events older than this many days before the run date are outside the window
    #: (late events inside the window are accepted and counted on the day they arrive).
    late_window_days: int = Field(3, ge=0)
    #: Interactions before this date are "ancient" (bad clocks, epoch zero).
    min_timestamp: str = "1995-01-01"
    #: A day with fewer than this share of the trailing median volume is a collapse (table-level failure).
    volume_min_ratio: float = Field(0.2, ge=0, le=1)
    volume_lookback_days: int = Field(7, ge=1)
    #: A day whose quarantine share exceeds this fails the step (something upstream is broken).
    max_quarantine_share: float = Field(0.5, ge=0, le=1)
    #: Columns outside the contract fail the batch (a changed producer format should be noticed);
    #: true drops them from the canonical table (the quarantine still keeps them as text).
    allow_extra_columns: bool = False
    #: New source ratings are validated this many rows at a time (the first night validates the whole
    #: history): the ingest's peak memory is one slice's, not the history's (docs/benchmarks.md).
    validate_chunk_rows: int = Field(2_000_000, ge=1)


class SVDSettings(Section):
    """PureSVD with popularity debiasing (models/recommenders/svd.py); defaults chosen on the ML-100k
    split."""

    #: Number of singular vectors kept (more factors overfit; docs/benchmarks.md, "Where the defaults
    #: come from").
    factors: int = Field(20, ge=1)
    #: Popularity debiasing exponent applied to item columns before the SVD (0 = none).
    popularity_exponent: float = Field(0.1, ge=0)
    #: Fixed seed overriding the derived one (None = derive from arms.seed and the run date).
    seed: int | None = None


class LightFMSettings(Section):
    """LightFM hybrid matrix factorisation (models/recommenders/lightfm_warp.py)."""

    components: int = Field(64, ge=1)
    loss: Literal["warp", "bpr", "warp-kos", "logistic"] = "warp"
    #: 15 epochs at rate 0.07: as accurate as 20 epochs in less time (docs/benchmarks.md, "Where the
    #: defaults come from").
    epochs: int = Field(15, ge=1)
    learning_rate: float = Field(0.07, gt=0)
    item_alpha: float = Field(1e-6, ge=0)
    user_alpha: float = Field(1e-6, ge=0)
    #: Ratings at or above this value are positives for the implicit LightFM model.
    positive_threshold: float = 0.0
    #: Item features = identity + genre indicators (hybrid) when true, identity only when false.
    use_genre_features: bool = True
    #: Weight of each genre feature relative to the identity feature (rows are then L1-normalised).
    genre_feature_weight: float = Field(1.0, ge=0)
    #: WARP: maximum negatives sampled per positive.
    max_sampled: int = Field(10, ge=1)
    #: Training budget in epochs x positives: large histories run fewer epochs (at least 1) so the arm
    #: fits the nightly window; ML-100k stays at its epochs (docs/benchmarks.md, "Where the defaults come
    #: from").
    max_updates: int = Field(3_000_000, ge=1)
    #: Hogwild threads. Only 1 thread gives bit-identical models for a seed; >1 is faster, not exact.
    threads: int = Field(1, ge=1)
    #: Fixed seed overriding the derived one (None = derive from arms.seed and the run date).
    seed: int | None = None


class GraphSettings(Section):
    """RP3beta random walk (Paudel et al., 2017), models/recommenders/graph.py."""

    #: Exponent on the transition probabilities (1 = plain P3).
    alpha: float = Field(0.8, gt=0)
    #: Popularity penalty exponent on the arrival item (0 = P3alpha).
    beta: float = Field(0.6, ge=0)
    #: Neighbours kept per item row of the item-item matrix.
    top_k: int = Field(200, ge=1)
    #: Item rows computed per block (memory ~ block_items x n_items float64).
    block_items: int = Field(1024, ge=1)


class ItemCFSettings(Section):
    """Item-item model (models/recommenders/item_cf.py): EASE^R on catalogs that fit, shrunk cosine top-k
    otherwise."""

    #: "auto" = EASE^R when n_items <= ease_max_items, else shrunk cosine.
    method: Literal["auto", "ease", "cosine"] = "auto"
    #: EASE^R L2 penalty (chosen on the ML-100k split; docs/benchmarks.md, "Where the defaults come from").
    ease_lambda: float = Field(300.0, gt=0)
    #: Largest catalog for EASE^R's dense items x items inverse (its peak memory: docs/benchmarks.md,
    #: "Where the defaults come from").
    ease_max_items: int = Field(8000, ge=1)
    #: Shrunk cosine: neighbours kept per item (docs/benchmarks.md, "Where the defaults come from").
    neighbours: int = Field(20, ge=1)
    #: Shrunk cosine: shrinkage term h in c_ij / (n_i n_j + h).
    shrinkage: float = Field(10.0, ge=0)
    #: Shrunk cosine: item rows computed per block (memory ~ block_items x n_items float64).
    block_items: int = Field(1024, ge=1)


class LongTailSettings(Section):
    """Long-tail arm (models/recommenders/long_tail.py): base relevance boosted toward the tail,
    quality-floored."""

    #: Share of interactions held by the short head; items outside it are long tail.
    head_share: float = Field(0.8, gt=0, lt=1)
    #: Multiplicative boost of long-tail items' normalised relevance: higher buys tail share with accuracy
    #: (the sweep: docs/benchmarks.md, "Where the defaults come from").
    tail_boost: float = Field(2.5, ge=1)
    #: Relevance model whose scores are boosted (a relevance arm of deepcuts/arms.py).
    base: str = "item_cf"


class SerendipitySettings(Section):
    """Serendipity arm (models/recommenders/serendipity.py): relevance x exp(weight x unexpectedness)."""

    #: Weight of unexpectedness versus relevance (log-odds scale): higher buys tail share with accuracy
    #: (the sweep: docs/benchmarks.md, "Where the defaults come from").
    unexpectedness_weight: float = Field(2.15, ge=0)
    #: Share of unexpectedness from "not popular" (1 - popularity percentile); the rest is genre distance.
    popularity_mix: float = Field(0.7, ge=0, le=1)
    #: Relevance model whose scores are re-weighted (a relevance arm of deepcuts/arms.py).
    base: str = "item_cf"


class QualitySettings(Section):
    """Bayesian (shrunk) mean rating used as the quality of an item everywhere."""

    #: Pseudo-count of the prior: an item with few ratings is pulled toward the global mean.
    prior_weight: float = Field(10.0, gt=0)
    #: Per-item floor (5-point scale, scaled linearly): the long_tail and serendipity arms rank items whose
    #: shrunk mean is below it last, the candidates' long-tail quota takes none of them and the re-ranker
    #: never serves a long-tail item below it while other candidates can fill the list (docs/deep-cuts.md).
    #: 3.5, not 4.0, because a shrunk mean of 4.0 is rare in the tail (docs/benchmarks.md, "Where the
    #: defaults come from").
    item_floor_5pt: float = Field(3.5, ge=1, le=5)
    #: Items with fewer ratings than this are under the floor too (their quality is mostly the prior).
    min_ratings: int = Field(1, ge=0)


class ArmsSettings(Section):
    """The arms (deepcuts/arms.py) and their sections: one field per arm that has knobs."""

    #: Arms trained and served each night: default every registered arm. A run's plan may narrow it
    #: (the DAG's ``arms`` param, ``run_night(arms=...)``; pipelines/plan.py).
    enabled: tuple[str, ...] = Field(default_factory=arm_names)
    #: Candidates per user and arm written each night.
    candidates_n: int = Field(100, ge=10)
    #: Number of user shards for candidate generation and scoring (each shard can be its own task).
    user_shards: int = Field(4, ge=1)
    #: Users scored per block when recommending (peak memory ~ batch_users x n_items x 4 bytes per arm).
    batch_users: int = Field(1024, ge=1)
    #: BLAS/LAPACK threads while an arm fits (train) and scores (candidates); 0 = the library default
    #: (one per core). One thread is faster here: OpenBLAS's threaded potrf/potri (EASE^R) and the small
    #: products of ARPACK (svd) spin on thread barriers when the other core is busy, as it is with two
    #: tasks on two cores (timings: docs/benchmarks.md, "Where the defaults come from"; docs/models.md).
    blas_threads: int = Field(1, ge=0)
    #: Candidates step: MB of the base arm's score blocks (long_tail / serendipity base) kept per shard so
    #: the deep-cut arms reuse them instead of rescoring (deepcuts.models.recommenders.base.shared_scores);
    #: 0 = off.
    score_cache_mb: float = Field(256.0, ge=0)
    #: Master seed of the arms; each arm's fit seed is derive_seed(seed, run_date, "train/<arm>").
    seed: int = 42
    #: Long-tail candidates per user and arm: the list of candidates_n holds at least this many long-tail
    #: items at or above the per-item floor (arms.quality.item_floor_5pt), the best of the arm's own
    #: scores, so a served list inside the long-tail band is always feasible (docs/deep-cuts.md).
    tail_candidates: int = Field(40, ge=0)
    #: Head candidates per user and arm (the same rule for head items): the serendipity arm's own top 100
    #: can be almost all long tail for users who rated most of the head.
    head_candidates: int = Field(20, ge=0)
    #: History weight of a rating below preference_liked_5pt (a liked rating weighs 1) in the item_cf,
    #: svd and graph arms: 0.5 leans the scores toward what users liked, for a small accuracy cost
    #: (docs/benchmarks.md, "Where the defaults come from"); 1 = binary history (docs/deep-cuts.md).
    preference_other_weight: float = Field(0.5, ge=0, le=1)
    #: A rating at or above this (5-point scale, scaled linearly) counts as liked.
    preference_liked_5pt: float = Field(4.0, ge=1, le=5)
    svd: SVDSettings = SVDSettings()
    lightfm: LightFMSettings = LightFMSettings()
    graph: GraphSettings = GraphSettings()
    item_cf: ItemCFSettings = ItemCFSettings()
    long_tail: LongTailSettings = LongTailSettings()
    serendipity: SerendipitySettings = SerendipitySettings()
    quality: QualitySettings = QualitySettings()

    @model_validator(mode="after")
    def _known_arms(self) -> ArmsSettings:
        unknown = unknown_arms(self.enabled)
        if unknown:
            raise ValueError(f"unknown arms {unknown} in arms.enabled; choose from {list(arm_names())}")
        for spec in ARMS.values():
            if spec.section is not None and not isinstance(getattr(self, spec.section, None), Section):
                raise ValueError(
                    f"arm {spec.name!r} declares the settings section arms.{spec.section}, which "
                    "ArmsSettings lacks; add it (CONTRIBUTING.md, 'Adding an arm')"
                )
            base = getattr(getattr(self, spec.section or "", None), "base", None)
            if spec.role is ArmRole.DEEP_CUT and base not in relevance_arm_names():
                raise ValueError(
                    f"arms.{spec.section}.base={base!r} is not a relevance arm; "
                    f"choose one of {list(relevance_arm_names())}"
                )
        if self.tail_candidates + self.head_candidates > self.candidates_n:
            raise ValueError(
                f"arms.tail_candidates + arms.head_candidates ({self.tail_candidates} + "
                f"{self.head_candidates}) exceed arms.candidates_n ({self.candidates_n}); lower the quotas"
            )
        return self


class RerankSettings(Section):
    """Deep-cut scores and re-ranker targets (models/reranking/rerank.py, pipelines/score.py,
    docs/deep-cuts.md)."""

    list_length: int = Field(10, ge=1)
    #: A long-tail item at or above this shrunk mean (5-point scale, scaled) is a "hidden_gem" in the
    #: reasons; also the list-mean floor when list_quality_floor is on.
    quality_floor: float = Field(4.0, ge=1, le=5)
    #: Band of the long-tail share of a list: [ceil(min * L), floor(max * L)] long-tail items.
    long_tail_min: float = Field(0.35, ge=0, le=1)
    long_tail_max: float = Field(0.40, ge=0, le=1)
    #: Distinct genres wanted in a list (capped by the genres among the user's candidates).
    min_genres: int = Field(6, ge=1)
    #: MMR trade-off: weight of relevance versus diversity. 0.97: diversity only breaks near-ties, the
    #: arm's order is kept where the constraints allow (docs/benchmarks.md, "Where the defaults come from").
    mmr_lambda: float = Field(0.97, ge=0, le=1)
    #: Steck's calibration trade-off: weight of the KL term versus the MMR term (same table).
    calibration_lambda: float = Field(0.03, ge=0, le=1)
    #: Steck's smoothing of the list's genre mix toward the profile (keeps the KL finite).
    calibration_alpha: float = Field(0.01, gt=0, le=1)
    niche_genres: tuple[str, ...] = ("Anime", "Documentary", "Film-Noir", "Western", "Musical")
    #: Gain added to niche-genre candidates for users with a niche appetite.
    niche_boost: float = Field(0.1, ge=0)
    #: A user has a niche appetite when at least this share of their history is niche-genre items.
    niche_appetite_min: float = Field(0.05, ge=0, le=1)
    #: Weight of the embedding distance in the combined unexpectedness (0 = genre distance only).
    embedding_weight: float = Field(0.5, ge=0, le=1)
    #: Users re-ranked per numpy block (memory is about batch * candidates * genres * 32 bytes).
    batch_users: int = Field(1024, ge=1)
    #: Re-rank the lists of these arms (empty: every enabled arm, arms.enabled).
    arms: tuple[str, ...] = ()
    #: Top up candidate lists shorter than list_length with the most popular unrated items.
    fill_short_lists: bool = True
    #: Quality rule (docs/deep-cuts.md): per rating point of an item's shrunk mean (5-point scale), how
    #: much normalised relevance it is worth; tilts the ranking toward items users rate highly
    #: (docs/benchmarks.md, "Where the defaults come from").
    quality_weight: float = Field(0.2, ge=0)
    #: The pre-issue-13 rule "list mean of shrunk catalogue means >= quality_floor": off by default, it
    #: cost too much accuracy inside the long-tail band (docs/benchmarks.md); the per-item floor on long-tail
    #: items (arms.quality.item_floor_5pt) and quality_weight keep served quality instead.
    list_quality_floor: bool = False

    @model_validator(mode="after")
    def _anime_is_niche(self) -> RerankSettings:
        if "Anime" not in self.niche_genres:
            # Anime is always a niche genre: the product promise starts there.
            object.__setattr__(self, "niche_genres", ("Anime", *self.niche_genres))
        if self.long_tail_min > self.long_tail_max:
            raise ValueError("rerank.long_tail_min must be <= rerank.long_tail_max")
        return self


class BanditSettings(Section):
    """Contextual Thompson-sampling bandit over the arms (docs/bandit.md)."""

    #: Default: every registered arm but the baselines (deepcuts/arms.py).
    arms: tuple[str, ...] = Field(default_factory=bandit_arm_names)
    #: Beta prior of every (context, arm): Beta(prior_alpha, prior_beta); 1, 1 = uniform on the CTR.
    #: At least 0.1: below that, Beta draws and quantiles collapse onto 0.0/1.0 in float64 and the
    #: selection probabilities lose their accuracy (Jeffreys' 0.5 is fine).
    prior_alpha: float = Field(1.0, ge=0.1)
    prior_beta: float = Field(1.0, ge=0.1)
    #: Daily discount of past evidence (1 = stationary): alpha <- a0 + discount * (alpha - a0), same for beta,
    #: before the day's evidence is added.
    discount: float = Field(0.98, gt=0, le=1)
    #: Minimum selection probability of every arm in every context (mixed with uniform).
    exploration_floor: float = Field(0.02, ge=0, lt=1)
    #: How P(arm wins) is computed: exact numerical integration (default) or Monte Carlo.
    selection_method: Literal["exact", "monte_carlo"] = "exact"
    #: Grid points per arm for the exact integration (placed over each arm's own posterior support).
    integration_points: int = Field(2000, ge=200)
    #: Monte Carlo draws for selection probabilities (40k draws give +-0.005 at 95%).
    mc_draws: int = Field(40_000, ge=1000)
    #: Share evidence between contexts when choosing: each (context, arm) gets up to ``pooling_strength``
    #: pseudo-trials at the arm's mean over the other contexts of its group (same segment / all contexts).
    #: ``none`` = independent contexts. Stored posteriors stay per context. Default ``segment``: in the
    #: synthetic world the best arm is shared by a segment's dayparts (regret with and without:
    #: docs/bandit.md).
    pooling: Literal["none", "segment", "global"] = "segment"
    pooling_strength: float = Field(100.0, ge=0)
    #: How many pseudo-trials a context borrows: ``fixed`` = ``pooling_strength``; ``empirical_bayes`` =
    #: at most the group's concentration estimated nightly from the evidence (method of moments), so
    #: contexts whose best arms differ stop pooling instead of copying each other (docs/bandit.md).
    pooling_rule: Literal["fixed", "empirical_bayes"] = "empirical_bayes"
    seed: int = 1234
    #: Segments: new (< new_max_ratings), power (>= power_min_ratings and active in recency_days), casual.
    new_max_ratings: int = Field(5, ge=1)
    power_min_ratings: int = Field(100, ge=1)
    power_recency_days: int = Field(30, ge=1)
    #: Daypart start hours (UTC): morning, afternoon, evening, night.
    daypart_starts: tuple[int, int, int, int] = (6, 12, 18, 23)
    #: Off-policy evaluation: bootstrap replicates (resampling users) for the 95% intervals.
    ope_bootstrap: int = Field(500, ge=50)
    #: An OPE estimate whose effective sample size is below this is flagged as thin support.
    ope_min_ess: float = Field(100.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> BanditSettings:
        if not self.arms or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"bandit.arms must be non-empty and unique, got {list(self.arms)}")
        unknown = unknown_arms(self.arms)
        if unknown:
            raise ValueError(f"bandit.arms has unknown arms {unknown}; choose from {list(arm_names())}")
        if self.exploration_floor * len(self.arms) > 1:
            raise ValueError(
                f"bandit.exploration_floor={self.exploration_floor} x {len(self.arms)} arms exceeds 1; "
                f"lower it to at most {1 / len(self.arms):.4f}"
            )
        starts = self.daypart_starts
        if any(not 0 <= h < 24 for h in starts) or len(set(starts)) != 4:
            raise ValueError(f"bandit.daypart_starts must be 4 distinct hours in [0, 24), got {starts}")
        if self.new_max_ratings > self.power_min_ratings:
            raise ValueError("bandit.new_max_ratings must be <= bandit.power_min_ratings")
        return self


class IntradaySettings(Section):
    """Intraday bandit refreshes (``deepcuts.pipelines.intraday``, DAG ``deepcuts_intraday``;
    docs/bandit.md)."""

    #: Refresh slots per day: slot ``s`` covers the events stamped before ``(s + 1) * 24 h / n`` of the
    #: day. Must divide 1440 minutes. The DAG runs once per slot (hourly = 24).
    refreshes_per_day: int = Field(24, ge=1, le=1440)
    #: A refresh whose newest valid event is older than this many minutes before its slot ends warns
    #: (the app's log export or the transfer is lagging).
    max_feedback_lag_minutes: int = Field(180, ge=1)
    #: Publish the re-assignment as a new serving version (false: compute and store it only).
    publish: bool = True
    #: How a refresh pools across contexts (``bandit.pooling``): ``snapshot`` pools the night's snapshot
    #: only (its borrowed pseudo-trials and empirical-Bayes caps) and adds the day's evidence unpooled;
    #: ``live`` pools the snapshot plus the day so far, as the night does, so a few hours of the
    #: neighbours' evidence pull a context and re-estimate the caps. ``snapshot`` halves the lock-ins on
    #: a neighbour's arm in the planted world (docs/benchmarks.md, "Intraday refreshes").
    refresh_pooling: Literal["snapshot", "live"] = "snapshot"

    @model_validator(mode="after")
    def _slots_divide_the_day(self) -> IntradaySettings:
        if 1440 % self.refreshes_per_day:
            raise ValueError(
                f"intraday.refreshes_per_day must divide 1440 minutes, got {self.refreshes_per_day}"
            )
        return self


class ABSettings(Section):
    """A/B test of the baseline (control) against bandit + re-ranker (treatment); docs/ab-testing.md."""

    #: Experiment name and salt of the user hash split; changing either starts a new experiment (the
    #: sequential test's running state is reset). These four are the first experiment only: later ones
    #: are started, ramped, stopped and shipped with `deepcuts experiment` (docs/ab-testing.md).
    experiment: str = "deepcuts-ab-1"
    salt: str = "deepcuts-2026"
    treatment_share: float = Field(0.5, gt=0, lt=1)
    #: Control arm: the single best-accuracy arm, served without re-ranking.
    baseline_arm: str = "svd"
    #: Significance level of the always-valid (mSPRT) test and the confidence level of the CIs (1 - alpha).
    alpha: float = Field(0.05, gt=0, lt=1)
    #: mSPRT mixing variance tau^2 of the N(0, tau^2) prior on the CTR difference (absolute CTR units
    #: squared): the test is most sensitive to differences near tau; 1e-5 (tau ~ 0.3 CTR points) targets
    #: a 5% relative lift on a 5-7% CTR (benchmarks/bench_ab.py compares values).
    msprt_tau2: float = Field(1e-5, gt=0)
    #: The sample-ratio-mismatch chi-square fires below this p-value (strict: a false SRM voids a test).
    srm_alpha: float = Field(0.001, gt=0, lt=1)
    #: No verdict other than "keep running" before each variant has this many exposed users.
    min_users_per_variant: int = Field(100, ge=2)
    # --- guardrails: treatment may not be worse than control by more than these margins -------------
    #: Mean observed rating (absolute points on the dataset's rating scale).
    guardrail_rating_drop: float = Field(0.1, ge=0)
    #: Long-tail share of the served lists (absolute share).
    guardrail_long_tail_drop: float = Field(0.05, ge=0)
    #: Distinct genres per served list.
    guardrail_genres_drop: float = Field(0.5, ge=0)
    #: Catalog coverage of the served lists (absolute share of the catalog).
    guardrail_coverage_drop: float = Field(0.02, ge=0)


class TargetsSettings(Section):
    """The product's promise in numbers: the scoreboard of ``ab_analysis`` (docs/metrics.md).

    Only the targets that exist nowhere else live here; the list targets are the re-ranker's own
    settings, so that the scoreboard judges the lists against the very numbers they are built for:
    long-tail share ``[rerank.long_tail_min, rerank.long_tail_max]`` and genres per list
    ``>= rerank.min_genres``.
    """

    #: Relative CTR lift of treatment over control (cumulative, item impressions): met at or above this.
    ctr_lift_min: float = 0.15
    #: Upper end of the promised lift band (+15-20%); shown with the target, a lift above it is still met.
    ctr_lift_goal: float = 0.20
    #: Niche-genre clicks per exposed user, treatment / control (``rerank.niche_genres``): met at or above.
    niche_click_ratio_min: float = Field(3.0, gt=0)
    #: Mean rating users give to what they were recommended (rating events, treatment), 5-point scale
    #: (scaled to the source's): the promise "average rating >= 4.0". Not rerank.quality_floor, which
    #: judges catalogue means of single items (hidden gems), nor monitor.min_mean_quality, a health floor.
    mean_rating_min_5pt: float = Field(4.0, ge=1, le=5)


class SimulatorSettings(Section):
    """The closed-loop simulator (``deepcuts simulate``); docs/simulator.md."""

    #: Registry steps that ``run_night`` skips during a simulation (e.g. ``["report"]`` to save time);
    #: names of ``deepcuts.pipelines.nightly.STEPS``, checked when the settings load.
    skip_steps: tuple[str, ...] = ()
    #: Synthetic world: probability that a simulated user rates an item they clicked.
    rating_probability: float = Field(0.5, ge=0, le=1)
    #: MovieLens replay: a shown item the user rates within this many days after the served day is
    #: a response to the list.
    replay_window_days: int = Field(7, ge=1)
    #: MovieLens replay: such a rating counts as a click when >= this value (5-point scale, scaled).
    replay_click_rating: float = Field(4.0, ge=1, le=5)
    #: MovieLens replay: night 1 is this date (ISO); empty = the ``replay_cut_quantile`` of rating times.
    replay_cut: str | None = None
    replay_cut_quantile: float = Field(0.7, gt=0, lt=1)
    #: When a night's publish is rejected, the simulated operator acknowledges that night's alerts and
    #: publishes again (recorded in the night's ``publish`` note); false = yesterday's lists stay live.
    acknowledge_critical_alerts: bool = True
    #: Synthetic world, bandit validation only: each context gets a planted arm (drawn from the seed)
    #: whose lists' click probabilities are multiplied by 1 + this lift, so that one arm is truly best
    #: per context by a known margin. 0 = the world exactly as generated.
    planted_arm_lift: float = Field(0.0, ge=0)
    #: Write the PNG of the main curves next to sim.json.
    plot: bool = True
    #: Processes for the per-arm and per-shard calls of a night (like Celery slots); 0 = one per CPU,
    #: 1 = everything in the simulator's own process.
    workers: int = Field(0, ge=0)
    #: Serve each day in this many slots with an intraday refresh (pipelines/intraday.py) after every
    #: slot but the last; 1 = the nightly run is the only learning. Must divide 24 (a visit starts in the
    #: first 45 minutes of an hour, so a slot of whole hours holds whole visits; world.visit_timing).
    refreshes_per_day: int = Field(1, ge=1, le=24)

    @model_validator(mode="after")
    def _slots_are_whole_hours(self) -> SimulatorSettings:
        if 24 % self.refreshes_per_day:
            raise ValueError(f"simulator.refreshes_per_day must divide 24, got {self.refreshes_per_day}")
        return self


class MonitorSettings(Section):
    """Nightly health checks (``deepcuts.pipelines.monitor``; docs/monitoring.md). A failed check is an alert
    with severity ``critical`` if its name is in ``critical_checks``, else ``warning``; a critical alert
    blocks the publish of its run date (the app keeps the previous version)."""

    #: Band for the share of served slots that are long-tail items.
    long_tail_min: float = Field(0.2, ge=0, le=1)
    long_tail_max: float = Field(0.6, ge=0, le=1)
    #: Mean number of distinct genres per served list.
    min_genres_per_list: float = Field(4.0, ge=0)
    #: Catalog coverage: distinct served items / catalog size.
    min_coverage: float = Field(0.05, ge=0, le=1)
    #: Gini of item exposure over the whole catalog (1 = all exposure on one item).
    max_gini: float = Field(0.95, ge=0, le=1)
    #: Floor for the mean predicted (Bayesian item quality of served items) and the mean observed rating,
    #: on a 5-point scale (mapped linearly to the source's rating scale).
    min_mean_quality: float = Field(3.8, ge=1, le=5)
    #: Relative CTR drop against the trailing window: 1 - CTR(D) / CTR(D-w..D-1).
    max_ctr_drop: float = Field(0.3, ge=0, le=1)
    ctr_trailing_days: int = Field(7, ge=1)
    #: Impressions needed on D and in the trailing window before the CTR check is judged.
    min_impressions_for_ctr: int = Field(200, ge=1)
    #: Ratings in the app's feedback needed on D before the observed-rating check is judged.
    min_ratings_for_quality: int = Field(30, ge=1)
    #: Selection-probability band of every arm in every (segment, daypart) context of the policy.
    arm_floor: float = Field(0.01, ge=0, le=1)
    arm_ceiling: float = Field(0.95, ge=0, le=1)
    #: Feedback events on D / median of the trailing ``ctr_trailing_days`` days.
    min_feedback_ratio: float = Field(0.2, ge=0)
    #: Quarantined / incoming rows in the ingest validation summary.
    max_quarantine_share: float = Field(0.05, ge=0, le=1)
    #: Newest feedback event must be at most this old at the end of the run date.
    max_feedback_age_hours: float = Field(36.0, gt=0)
    #: OPE: estimates must lie in [0, 1] and inside their CI; ESS below this is a warning.
    min_ope_ess: float = Field(30.0, ge=0)
    #: Checks whose failure is critical (blocks the publish); all others are warnings. Names of
    #: ``deepcuts.pipelines.monitor_checks.CHECKS``, checked when the settings load (a typo would drop the
    # veto).
    critical_checks: tuple[str, ...] = (
        "served_lists_present",
        "mean_predicted_quality",
        "arm_floor",
    )
    #: Webhook URL for alerts (empty = log only); JSON POST of the alerts.
    webhook_url: str = ""
    webhook_timeout_s: float = Field(10.0, gt=0)
    #: Comma-separated e-mail recipients (empty = none); sent through ``smtp_host``.
    email_to: str = ""
    email_from: str = "deepcuts@localhost"
    smtp_host: str = "localhost"
    smtp_port: int = 25


class ReportSettings(Section):
    """The nightly HTML report (``deepcuts.pipelines.report``; docs/architecture.md)."""

    #: Resolution of the embedded plots.
    dpi: int = Field(90, ge=20)
    #: Trend plots label at most this many nights on their x axis (evenly spaced).
    date_labels: int = Field(8, ge=1)


class WeeklyReviewSettings(Section):
    """The weekly diversity and performance review (``deepcuts.pipelines.weekly_review``;
    docs/operations.md)."""

    #: The week: nights whose genres, arm shares and alerts the review shows, and the short trend window.
    short_window_days: int = Field(7, ge=1)
    #: The long trend window the week's means are compared with (the monthly view).
    long_window_days: int = Field(28, ge=1)


class PublishSettings(Section):
    """Versioned publish to the serving DB (``deepcuts.pipelines.publish``; docs/serving.md)."""

    #: Versions whose tables are kept (the live one included); older ones are dropped.
    keep_versions: int = Field(7, ge=1)
    #: Plausible band for the share of users whose list changed since the last version.
    min_changed_share: float = Field(0.0, ge=0, le=1)
    max_changed_share: float = Field(1.0, ge=0, le=1)
    #: PostgreSQL: how long the view switch may wait for readers' locks before it fails (and is retried).
    switch_lock_timeout_ms: int = Field(5000, ge=100)
    switch_attempts: int = Field(3, ge=1)
    #: How long publish/rollback wait for the writers' lock held by another publish/rollback, per
    #: attempt, and how many attempts before giving up with a clear error (docs/serving.md, "One writer").
    writer_lock_timeout_ms: int = Field(10_000, ge=100)
    writer_lock_attempts: int = Field(3, ge=1)
    #: Rows per COPY / executemany chunk while loading a version (bounds the client's memory).
    load_chunk_rows: int = Field(200_000, ge=1000)
    #: Publishing a run date older than the live one (a backfill) loads nothing and keeps the live one.
    skip_older_run_dates: bool = True


class EvaluateSettings(Section):
    """Offline evaluation (``deepcuts evaluate`` and the nightly ``evaluate`` step); docs/metrics.md."""

    #: List length scored by every top-k metric.
    k: int = Field(10, ge=1)
    #: ``--protocol stratified``: train share per item (Microsoft Recommenders python_stratified_split).
    stratified_ratio: float = Field(0.75, gt=0, lt=1)
    #: Seed of the stratified split (42 reproduces the published ML-100k split byte for byte).
    split_seed: int = 42
    #: ``--protocol temporal``: share of each user's latest ratings held out.
    temporal_test_share: float = Field(0.2, gt=0, lt=1)


class TuneSettings(Section):
    """The weekly ``tune`` step and ``deepcuts evaluate --tune``: each arm's key hyperparameters picked on
    a temporal validation split inside the training data (pipelines/tune.py, docs/models.md)."""

    #: Arms whose hyperparameters are searched (the deep-cut arms inherit their base arm's values).
    arms: tuple[str, ...] = ("item_cf", "svd", "graph", "lightfm")
    #: Share of the training ratings held out as the validation set.
    validation_share: float = Field(0.2, gt=0, lt=1)
    #: How they are held out: each user's latest ratings (``temporal``: the nightly question, predict
    #: what comes next) or a random share per item (``stratified``, seed ``evaluate.split_seed``).
    #: ``deepcuts evaluate --tune`` uses the protocol of the evaluation split instead, since values
    #: chosen on one protocol do not carry to the other (ML-100k: docs/models.md, "Tuning").
    validation_protocol: Literal["temporal", "stratified"] = "temporal"
    #: Wall-clock budget of the whole search; each arm gets an equal share of what is left, and an arm
    #: out of time keeps the best value tried so far (the current setting is always tried first).
    budget_seconds: float = Field(600.0, gt=0)
    #: A tried value replaces the current setting only if its validation nDCG@k is higher by this much
    #: (absolute); below it the difference is noise on a split of a few thousand ratings.
    min_gain: float = Field(0.001, ge=0)
    #: The nightly train step applies the newest tuning at or before its run date when this is on.
    use_in_train: bool = True
    #: Grids, tried in order after the current value (EASE^R lambda; shrunk-cosine neighbours).
    #: (lambda grows with the data: 300 is best on ML-100k, 3000 was the grid's edge at ML-1M shape)
    item_cf_ease_lambdas: tuple[float, ...] = (100.0, 200.0, 500.0, 800.0, 1200.0, 2000.0, 3000.0, 5e3, 8e3)
    item_cf_neighbours: tuple[int, ...] = (10, 20, 50, 100, 200)
    svd_factors: tuple[int, ...] = (10, 20, 32, 48, 64, 100)
    svd_popularity_exponents: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    graph_alphas: tuple[float, ...] = (0.6, 0.8, 1.0)
    graph_betas: tuple[float, ...] = (0.3, 0.45, 0.6)
    #: (400 neighbours per item beat 200 on both ML-100k and ml-latest-small test splits, +0.005 and
    #: +0.002 nDCG@10; 800 added nothing: docs/benchmarks.md, "Issue 18")
    graph_top_ks: tuple[int, ...] = (200, 400)
    lightfm_components: tuple[int, ...] = (32, 64)
    #: (10 epochs never won on ML-100k or ml-latest-small; at ML-1M shape the update cap runs 3 anyway)
    lightfm_epochs: tuple[int, ...] = (15, 30)
    #: (WARP with 30 sampled negatives, rate 0.05 and genre features at half weight was LightFM's best
    #: region on ML-100k; rate 0.1 lost 0.02-0.05 nDCG@10 there, genre weight 0 about 0.05)
    lightfm_learning_rates: tuple[float, ...] = (0.05, 0.07)
    lightfm_max_sampled: tuple[int, ...] = (10, 30)
    lightfm_genre_feature_weights: tuple[float, ...] = (1.0, 0.5)


class AirflowSettings(Section):
    """How the deepcuts DAGs run their tasks (dags/; read when Airflow parses a DAG file, so building the
    settings must stay cheap: no pandas, no I/O but the settings file)."""

    #: Retries of a failed task. ``make run`` (deepcuts/demo.py) sets 0 through
    #: ``DEEPCUTS_AIRFLOW__TASK_RETRIES`` so that a broken step fails the demo at once.
    task_retries: int = Field(2, ge=0)
    #: Delay before retrying a task of the nightly and weekly DAGs (the nightly DAG doubles it per retry).
    retry_delay_minutes: float = Field(5.0, gt=0)
    #: Delay before retrying a task of the hourly intraday DAG and the reports index (cheap, frequent).
    quick_retry_delay_minutes: float = Field(2.0, gt=0)


_OVERRIDES: ContextVar[dict[str, Any] | None] = ContextVar("deepcuts_settings_overrides", default=None)


class _OverrideSource(PydanticBaseSettingsSource):
    """Highest-priority source: the keyword overrides given to :func:`load_settings`."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_OVERRIDES.get() or {})


class Settings(BaseSettings):
    """The effective configuration of one deepcuts process."""

    model_config = SettingsConfigDict(
        env_prefix="DEEPCUTS_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    #: Root of the data lake: a local folder or an fsspec/pyarrow URI such as ``s3://bucket/deepcuts``.
    home: str = "./.deepcuts"
    #: SQLAlchemy URL of the serving database; default: a SQLite file under the lake.
    serving_url: str | None = None
    #: Master seed; components derive theirs from it and the run date.
    seed: int = 42
    source: SourceSettings = SourceSettings()
    world: WorldSettings = WorldSettings()
    ingest: IngestSettings = IngestSettings()
    arms: ArmsSettings = ArmsSettings()
    rerank: RerankSettings = RerankSettings()
    bandit: BanditSettings = BanditSettings()
    ab: ABSettings = ABSettings()
    targets: TargetsSettings = TargetsSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    monitor: MonitorSettings = MonitorSettings()
    publish: PublishSettings = PublishSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    report: ReportSettings = ReportSettings()
    weekly: WeeklyReviewSettings = WeeklyReviewSettings()
    tune: TuneSettings = TuneSettings()
    intraday: IntradaySettings = IntradaySettings()
    airflow: AirflowSettings = AirflowSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit overrides beat the environment, which beats the file (passed as init kwargs),
        # which beats the defaults.
        return _OverrideSource(settings_cls), env_settings, init_settings

    @property
    def is_local_home(self) -> bool:
        return "://" not in self.home

    @property
    def effective_serving_url(self) -> str:
        if self.serving_url:
            return self.serving_url
        if not self.is_local_home:
            raise ValueError(
                "DEEPCUTS_SERVING_URL must be set when the lake is remote "
                f"(home={self.home!r}); the SQLite default lives inside a local lake"
            )
        return f"sqlite:///{Path(self.home).resolve() / 'serving' / 'serving.db'}"

    @property
    def source_path(self) -> str:
        if self.source.path:
            return self.source.path
        if self.source.dataset == "synthetic":
            return f"{self.home.rstrip('/')}/world"
        raise ValueError(f"source.path must be set for dataset {self.source.dataset!r}")

    @model_validator(mode="after")
    def _known_registry_names(self) -> Settings:
        # The registries live beside the code they name and import this module, so their names are
        # imported here, once a Settings is built, never at import time; both name modules are light
        # (no pandas: every DAG file builds the settings at parse time; tests/deepcuts/test_settings.py).
        # A typo must not silently drop a check from the publish veto or a step from the skip list.
        from deepcuts.pipelines.monitor_check_names import CHECK_NAMES
        from deepcuts.pipelines.nightly import STEP_NAMES

        _known("monitor.critical_checks", self.monitor.critical_checks, CHECK_NAMES, "checks")
        _known("simulator.skip_steps", self.simulator.skip_steps, STEP_NAMES, "steps")
        return self

    def quality_floor_scaled(self, rating_min: float, rating_max: float) -> float:
        """The 5-point quality floor mapped linearly onto another rating scale."""
        from deepcuts.formulas import scale_5pt  # numpy and the contracts: not needed to load settings

        return scale_5pt(self.rerank.quality_floor, rating_min, rating_max)


def _known(field: str, names: tuple[str, ...], registry: tuple[str, ...], what: str) -> None:
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"{field}: unknown {what} {unknown}; the {what} are {list(registry)}")


def _config_file(explicit: str | Path | None) -> Path | None:
    if explicit is not None:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, the TOML file, the environment and explicit overrides.

    ``overrides`` win over everything (tests and the CLI use them).
    """
    data: dict[str, Any] = {}
    path = _config_file(config_file)
    if path is not None:
        if not path.exists():
            raise FileNotFoundError(
                f"settings file {path} does not exist (from {CONFIG_ENV_VAR} or --config); "
                "create it or unset the variable"
            )
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    token = _OVERRIDES.set(overrides)
    try:
        # Overrides are validated by the same rules as the file and the environment.
        return Settings(**data)
    finally:
        _OVERRIDES.reset(token)
