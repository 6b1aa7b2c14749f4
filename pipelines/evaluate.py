"""Offline evaluation: the ``deepcuts evaluate`` protocol and the nightly ``evaluate`` step.

Two entry points share :mod:`deepcuts.metrics`:

- :func:`evaluate_offline` fits every arm on a training frame, recommends the top k unseen items to
  every test user with a training history, and scores the lists against the held-out ratings (every
  test rating is relevant). :func:`evaluate_dataset` adds loading and splitting for the CLI.
- :func:`evaluate_night` (step registry: ``evaluate``) scores the candidate lists of the previous run
  against the ratings that arrived since, plus beyond-accuracy metrics of today's lists, and writes
  ``eval/offline``.

Re-ranker hook: pass ``list_transform`` to :func:`evaluate_offline`; it receives each arm's name and its
top-``n_candidates`` list and returns the served list, which is scored under ``"served"`` next to
``"arms"`` (docs/metrics.md, "Hook for re-ranked lists").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from deepcuts.arms import arm_names, unknown_arms
from deepcuts.contracts import C, Dataset
from deepcuts.metrics import ItemPopularity, ListContext, score_lists
from deepcuts.progress import get_logger, progress
from deepcuts.seeds import derive_seed
from deepcuts.settings import Settings, SourceSettings

if TYPE_CHECKING:
    from deepcuts.models.recommenders.base import Recommender
    from deepcuts.pipelines.storage import Lake

log = get_logger(__name__)

Protocol = Literal["stratified", "temporal", "given"]
#: ``(arm, candidates) -> served lists``; candidates are (user_id, item_id, rank, score), top
#: ``n_candidates`` per user; the result needs (user_id, item_id, rank).
ListTransform = Callable[[str, pd.DataFrame], pd.DataFrame]
#: Builds an unfitted recommender for an arm name.
RecommenderFactory = Callable[[str], "Recommender"]

#: Items file per dataset kind, for finding the catalog of a ``--train/--test`` split.
_ITEMS_FILES = {"ml-100k": "u.item", "ml-1m": "movies.dat", "ml-latest-small": "movies.csv"}


class EvaluationError(ValueError):
    """The evaluation cannot run on the given data (say what, where and what to do)."""


# ------------------------------------------------------------------------------------------ splits
def stratified_split(
    interactions: pd.DataFrame, ratio: float = 0.75, seed: int = 42, by: str = C.ITEM_ID
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Microsoft Recommenders' ``python_stratified_split(filter_by="item", ratio, seed)``.

    Every row draws ``u ~ U(0, 1)`` from ``numpy.random.RandomState(seed).rand(n)`` in input order;
    within each ``by`` group, ordered by ``u``, the first ``round(ratio * n_group)`` rows (half to even)
    are train, the rest test. On MovieLens-100K in file order with seed 42 this reproduces the
    published split (75,066 / 24,934 rows) pair for pair.
    """
    if not 0.0 < ratio < 1.0:
        raise EvaluationError(f"stratified split ratio must be in (0, 1) (got {ratio})")
    frame = interactions.reset_index(drop=True)
    draw = np.random.RandomState(seed).rand(len(frame))
    order = np.lexsort((draw, frame[by].to_numpy()))
    groups = frame[by].to_numpy()[order]
    # position within the group (0-based) in draw order, and group size, without a Python loop
    starts = np.r_[True, groups[1:] != groups[:-1]] if len(groups) else np.empty(0, bool)
    group_id = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    sizes = np.diff(np.r_[first, len(groups)])
    rank = np.arange(len(groups)) - first[group_id] + 1
    in_train = np.empty(len(frame), dtype=bool)
    in_train[order] = rank <= np.round(ratio * sizes[group_id])
    return frame[in_train].reset_index(drop=True), frame[~in_train].reset_index(drop=True)


def temporal_split(interactions: pd.DataFrame, test_share: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out each user's latest ratings: with a user's n ratings ordered by time (ties by item id),
    position ``p`` (1-based) is test when ``p / n > 1 - test_share`` (Recommenders' chrono split rule).

    A user with a single rating has only test data and is later skipped as having no train history.
    """
    if not 0.0 < test_share < 1.0:
        raise EvaluationError(f"temporal test share must be in (0, 1) (got {test_share})")
    if C.TS not in interactions.columns:
        raise EvaluationError(f"--protocol temporal needs a {C.TS!r} column; this dataset has no times")
    frame = interactions.sort_values([C.USER_ID, C.TS, C.ITEM_ID], kind="stable").reset_index(drop=True)
    grouped = frame.groupby(C.USER_ID, sort=False)
    position = grouped.cumcount().to_numpy() + 1
    size = grouped[C.USER_ID].transform("size").to_numpy()
    in_test = position / size > 1.0 - test_share + 1e-12
    return frame[~in_test].reset_index(drop=True), frame[in_test].reset_index(drop=True)


# ------------------------------------------------------------------------------------------ holdout
@dataclass(frozen=True)
class Holdout:
    """Train, relevant test ratings and the users the lists are scored for."""

    train: pd.DataFrame
    test: pd.DataFrame
    users: np.ndarray
    n_skipped_users: int
    n_seen_test_pairs: int


def clean_interactions(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Drop rows with a null id or rating (loaders keep them for ingest to quarantine) and cast ids."""
    needed = [C.USER_ID, C.ITEM_ID, C.RATING]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise EvaluationError(f"{where}: missing columns {missing}; expected canonical interactions")
    ok = frame[needed].notna().all(axis=1)
    out = frame
    if not ok.all():
        log.warning("%s: ignoring %d rows with a null id or rating", where, int((~ok).sum()))
        out = frame[ok]
    # no copy of a clean frame (copy-on-write: the caller's frame is never changed through this one)
    out = out.reset_index(drop=True)
    out[C.USER_ID] = out[C.USER_ID].astype(np.int64)
    out[C.ITEM_ID] = out[C.ITEM_ID].astype(np.int64)
    return out


def make_holdout(train: pd.DataFrame, test: pd.DataFrame) -> Holdout:
    """Keep test ratings of users with a train history; drop test pairs already seen in train.

    Seen items can never be recommended (every arm removes them), so they are not relevant either.
    """
    if train.empty:
        raise EvaluationError("the training split is empty; check the files or the split protocol")
    train_users = np.unique(train[C.USER_ID].to_numpy(np.int64))
    test_users = np.unique(test[C.USER_ID].to_numpy(np.int64))
    kept = test[test[C.USER_ID].isin(train_users)]
    seen = kept.merge(
        train[[C.USER_ID, C.ITEM_ID]].drop_duplicates(), on=[C.USER_ID, C.ITEM_ID], how="left", indicator=True
    )["_merge"].eq("both")
    kept = kept[~seen.to_numpy()].reset_index(drop=True)
    users = np.unique(kept[C.USER_ID].to_numpy(np.int64))
    return Holdout(
        train=train,
        test=kept,
        users=users,
        n_skipped_users=int(np.setdiff1d(test_users, train_users).size),
        n_seen_test_pairs=int(seen.sum()),
    )


# ------------------------------------------------------------------------------------------ offline
def long_tail_ids(train: pd.DataFrame, items: pd.DataFrame, settings: Settings) -> np.ndarray:
    """Long-tail items of ``train`` by the models' own definition
    (``deepcuts.models.recommenders.item_stats``)."""
    from deepcuts.models.recommenders.item_stats import ItemStats

    stats = ItemStats.from_frames(
        train, items, settings.arms.quality.prior_weight, settings.arms.long_tail.head_share
    )
    return stats.item_ids[stats.is_long_tail]


def _history_stats(
    interactions: pd.DataFrame, items: pd.DataFrame, settings: Settings
) -> tuple[np.ndarray, ItemPopularity]:
    """Long-tail item ids (:func:`long_tail_ids`) and the popularity of a history, from one interaction
    matrix: the counts of distinct users per item are its column counts (what
    ``ItemPopularity.from_interactions`` counts from the frame), so a big history is deduplicated once."""
    from deepcuts.models.recommenders.base import InteractionMatrix
    from deepcuts.models.recommenders.item_stats import ItemStats

    matrix = InteractionMatrix.from_frames(interactions, items)
    arms = settings.arms
    stats = ItemStats.from_matrix(matrix, arms.quality.prior_weight, arms.long_tail.head_share)
    counts = stats.counts.astype(np.float64)
    return stats.item_ids[stats.is_long_tail], ItemPopularity(stats.item_ids, counts, float(counts.sum()))


def _public_metrics(scored: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in scored.items() if key not in ("n_lists", "n_users")}


def evaluate_offline(
    train: pd.DataFrame,
    test: pd.DataFrame,
    items: pd.DataFrame,
    arms: Mapping[str, Callable[[], Recommender]],
    *,
    k: int = 10,
    head_share: float = 0.8,
    long_tail_item_ids: np.ndarray | None = None,
    list_transform: ListTransform | None = None,
    n_candidates: int | None = None,
    quotas: Sequence[tuple[np.ndarray, int]] = (),
) -> dict[str, Any]:
    """Fit each arm on ``train``, recommend top-k unseen items to every test user, score the lists.

    ``arms`` maps an arm name to a zero-argument factory of an unfitted recommender (so a failing arm
    does not cost the memory of all the others). Returns ``{"k", "n_users", "n_items",
    "n_skipped_users", "n_test_ratings", "arms": {name: metrics}}`` and, with ``list_transform``,
    ``"served": {name: metrics}`` for the transformed lists (built from the top ``n_candidates``,
    default ``max(k, 100)``, holding the ``(item_ids, count)`` ``quotas`` as the nightly candidates
    do: ``Recommender.recommend``; the arms' own top k are unchanged by the quotas as long as
    ``k <= n_candidates - sum(counts)``). Each arm's metrics hold ``precision@k``, ``recall@k``, ``ndcg@k``,
    ``map``, the beyond-accuracy metrics, ``fit_seconds`` and ``recommend_seconds``.
    """
    holdout = make_holdout(train, test)
    if holdout.users.size == 0:
        raise EvaluationError("no test user has a training history: nothing to evaluate")
    ctx = ListContext.build(
        k=k,
        train=holdout.train,
        items=items,
        head_share=head_share,
        truth=holdout.test,
        long_tail_item_ids=long_tail_item_ids,
    )
    n_lists = max(k, n_candidates or 100) if list_transform is not None else k
    result: dict[str, Any] = {
        "k": k,
        "n_users": int(holdout.users.size),
        "n_items": int(ctx.catalog_item_ids.size),
        "n_skipped_users": holdout.n_skipped_users,
        "n_test_ratings": len(holdout.test),
        "n_seen_test_pairs_dropped": holdout.n_seen_test_pairs,
        "arms": {},
    }
    if list_transform is not None:
        result["served"] = {}
    for name in progress(list(arms), desc="evaluate: fitting arms", total=len(arms), log_every_s=0.0):
        started = time.perf_counter()
        model = arms[name]().fit(holdout.train, items)
        fitted = time.perf_counter()
        recs = model.recommend(
            holdout.users, n_lists, exclude_seen=True, quotas=quotas if list_transform is not None else ()
        )
        done = time.perf_counter()
        metrics = _public_metrics(score_lists(recs, ctx, users=holdout.users))
        metrics["fit_seconds"] = round(fitted - started, 3)
        metrics["recommend_seconds"] = round(done - fitted, 3)
        result["arms"][name] = metrics
        log.info(
            "%s: ndcg@%d=%.4f fit %.2fs recommend %.2fs",
            name,
            k,
            metrics[f"ndcg@{k}"],
            metrics["fit_seconds"],
            metrics["recommend_seconds"],
        )
        if list_transform is not None:
            started = time.perf_counter()
            served = list_transform(name, recs)
            served_metrics = _public_metrics(score_lists(served, ctx, users=holdout.users))
            served_metrics["transform_seconds"] = round(time.perf_counter() - started, 3)
            result["served"][name] = served_metrics
    return result


def served_targets(result: Mapping[str, Any], settings: Settings) -> dict[str, Any] | None:
    """The product's targets on the ``served`` lists of an evaluation (None without served lists).

    Per deep-cut treatment arm (the bandit's arms, ``bandit.arms``): long-tail share inside
    ``[rerank.long_tail_min, rerank.long_tail_max]``, at least ``rerank.min_genres`` genres per list and
    a mean hit rating at or above ``rerank.quality_floor`` (scaled to the rating scale); and the best
    treatment arm's served nDCG@k over the best raw arm's (``ndcg_ratio``; the product asks >= 0.80).
    """
    served = result.get("served")
    if not served or not result.get("arms"):
        return None
    key = f"ndcg@{result['k']}"
    rs = settings.rerank
    floor = settings.quality_floor_scaled(settings.source.rating_min, settings.source.rating_max)
    arms: dict[str, dict[str, Any]] = {}
    for arm in (a for a in served if a in settings.bandit.arms):
        m = served[arm]
        share, genres, rating = m.get("long_tail_share"), m.get("genres_per_list"), m.get("mean_hit_rating")
        arms[arm] = {
            "long_tail_in_band": share is not None
            and rs.long_tail_min - 1e-9 <= share <= rs.long_tail_max + 1e-9,
            "genres_ok": genres is not None and genres >= rs.min_genres,
            "mean_hit_rating_ok": rating is not None and rating >= floor - 1e-9,
        }
    best_raw = max(result["arms"], key=lambda a: result["arms"][a][key])
    best_served = max(arms or served, key=lambda a: served[a][key])
    raw_ndcg = result["arms"][best_raw][key]
    return {
        "best_raw_arm": best_raw,
        "best_served_arm": best_served,
        "ndcg_ratio": served[best_served][key] / raw_ndcg if raw_ndcg else None,
        "arms": arms,
        "all_arms_met": bool(arms) and all(all(v.values()) for v in arms.values()),
    }


def resolve_arms(spec: str | None) -> list[str]:
    """``"all"``/``None`` -> every arm; else a comma list of known arm names, in the given order."""
    if spec is None or spec.strip() in ("", "all"):
        return list(arm_names())
    names = [a.strip() for a in spec.split(",") if a.strip()]
    unknown = unknown_arms(names)
    if unknown:
        raise EvaluationError(f"unknown arms {unknown} in --arms; choose from {list(arm_names())} or 'all'")
    return list(dict.fromkeys(names))


def registry_factories(names: list[str], settings: Settings) -> dict[str, Callable[[], Recommender]]:
    """Factories from ``deepcuts.models.recommenders.registry.build_recommender`` with a derived seed per
    arm."""
    from deepcuts.models.recommenders.registry import build_recommender

    def factory(arm: str) -> Callable[[], Recommender]:
        seed = derive_seed(settings.arms.seed, "offline-evaluation", arm)
        return lambda: build_recommender(arm, settings, seed)

    return {name: factory(name) for name in names}


def _find_items_root(kind: str, options: SourceSettings, start: Path) -> Path:
    """The nearest folder at or above ``start`` holding the dataset's items file."""
    items_file = _ITEMS_FILES.get(kind, options.items_file)
    for folder in (start, *start.parents):
        if (folder / items_file).is_file():
            return folder
    raise EvaluationError(
        f"no {items_file} found in {start} or its parents for --dataset {kind}; "
        "pass --path DIR with the dataset folder that holds the items file"
    )


def load_evaluation_data(
    kind: str,
    settings: Settings,
    *,
    path: str | Path | None = None,
    train_file: str | Path | None = None,
    test_file: str | Path | None = None,
    protocol: str = "stratified",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """Load ``(train, test, items, protocol)`` for ``deepcuts evaluate``.

    With ``train_file``/``test_file`` those exact files are used (tab-separated user, item, rating,
    unix time, no header) and the protocol is ``given``; items come from the dataset folder ``path``
    (default: the nearest parent folder of the train file holding the items file). Otherwise the
    dataset at ``path`` is split by ``protocol`` (``stratified`` or ``temporal``).
    """
    from deepcuts.pipelines.loaders import load_dataset, load_split

    options = settings.source
    if (train_file is None) != (test_file is None):
        raise EvaluationError("give both --train and --test, or neither (then --path)")
    if train_file is not None and test_file is not None:
        root = Path(path) if path else _find_items_root(kind, options, Path(train_file).resolve().parent)
        items = load_dataset(kind, root, options).items
        train, test = load_split(train_file, test_file)
        return (
            clean_interactions(train, str(train_file)),
            clean_interactions(test, str(test_file)),
            items,
            "given",
        )
    if path is None:
        raise EvaluationError("give --path DIR (the dataset folder) or --train FILE --test FILE")
    data = load_dataset(kind, path, options)
    interactions = clean_interactions(data.interactions, str(path))
    if protocol == "stratified":
        cfg = settings.evaluate
        train, test = stratified_split(interactions, cfg.stratified_ratio, cfg.split_seed)
    elif protocol == "temporal":
        train, test = temporal_split(interactions, settings.evaluate.temporal_test_share)
    else:
        raise EvaluationError(f"unknown protocol {protocol!r}; choose stratified or temporal")
    return train, test, data.items, protocol


def evaluate_dataset(
    kind: str,
    settings: Settings,
    *,
    path: str | Path | None = None,
    train_file: str | Path | None = None,
    test_file: str | Path | None = None,
    protocol: str = "stratified",
    k: int | None = None,
    arms: str | list[str] | None = "all",
    factory: RecommenderFactory | None = None,
    list_transform: ListTransform | None = None,
    rerank: bool = True,
    tune: bool = False,
) -> dict[str, Any]:
    """Load, split, evaluate: the JSON document of ``deepcuts evaluate``.

    ``factory(arm)`` builds an unfitted recommender (default:
    ``deepcuts.models.recommenders.registry.build_recommender`` with a seed derived from ``arms.seed``). With
    ``rerank`` and no ``list_transform``, every arm's top ``arms.candidates_n`` (with the nightly candidate
    quotas, ``deepcuts.pipelines.candidates``) go through the deep-cut re-ranker
    (``deepcuts.pipelines.score.rerank_transform``, lists of length k) and are scored under ``"served"``. With
    ``tune``, the arms' hyperparameters are first chosen on a temporal validation split of the training data
    alone (``deepcuts.pipelines.tune``; the test split is never looked at) and the document gets
    a ``"tuning"`` entry with the chosen values.
    """
    k = k or settings.evaluate.k
    names = resolve_arms(arms) if isinstance(arms, str) or arms is None else list(arms)
    train, test, items, used_protocol = load_evaluation_data(
        kind, settings, path=path, train_file=train_file, test_file=test_file, protocol=protocol
    )
    tuning = None
    if tune:
        from deepcuts.models.recommenders.registry import base_arm
        from deepcuts.pipelines.tune import apply_tuning, chosen_params, tune_on_frames

        wanted = set(names) | {base_arm(a, settings) for a in names} - {None}
        # validation mirrors the evaluation's protocol (a given split is a stratified one, as on ML-100k)
        inner = "temporal" if used_protocol == "temporal" else "stratified"
        tuning = tune_on_frames(
            train, items, settings, arms=[a for a in settings.tune.arms if a in wanted], protocol=inner
        )
        settings = apply_tuning(settings, chosen_params(tuning))
    quotas: list[tuple[np.ndarray, int]] = []
    if list_transform is None and rerank:
        from deepcuts.models.recommenders.base import InteractionMatrix
        from deepcuts.pipelines.candidates import candidate_quotas
        from deepcuts.pipelines.score import rerank_transform

        list_transform = rerank_transform(settings, train, items, length=k)
        quotas = candidate_quotas(InteractionMatrix.from_frames(train, items), settings)
    if factory is None:
        factories = registry_factories(names, settings)
    else:
        factories = {name: (lambda arm=name: factory(arm)) for name in names}
    result = evaluate_offline(
        train,
        test,
        items,
        factories,
        k=k,
        head_share=settings.arms.long_tail.head_share,
        long_tail_item_ids=long_tail_ids(train, items, settings),
        list_transform=list_transform,
        n_candidates=settings.arms.candidates_n,
        quotas=quotas,
    )
    out = {"dataset": kind, "protocol": used_protocol, **result}
    if tuning is not None:
        out["tuning"] = tuning
    targets = served_targets(out, settings)
    if targets is not None:
        out["served_targets"] = targets
    return out


# ------------------------------------------------------------------------------------------ nightly
def _read_top_k(
    lake: Lake, dataset: Dataset, run_date: date, k: int, arm: str, parts: Sequence[str] | None = None
) -> pd.DataFrame:
    """One arm's top ``k`` (rank <= k) of a lists dataset, with only the columns the metrics read.

    The filters run in Arrow while reading: the candidates hold 100 rows per user and arm, of which
    the metrics need ``k`` (converting all of them to pandas was most of this step's time), and one
    arm at a time keeps the step's memory that of one arm's lists. ``parts``: only those parts of the
    partition (the ones that can hold the arm, in partition order: the same rows in the same order as
    reading every part, without opening the other arms' files).
    """
    columns = [C.USER_ID, C.ITEM_ID, C.RANK, C.ARM]
    wanted = (pc.field(C.RANK) <= k) & (pc.field(C.ARM) == arm)
    return lake.read_df(dataset, run_date, parts=parts, columns=columns, filter=wanted)


def _parts_by_arm(lake: Lake, dataset: Dataset, run_date: date) -> dict[str, list[str]]:
    """The parts that hold each arm's lists, in partition order, by arm (sorted): from the Parquet footer
    when the part holds one arm, as every part the steps write does, else from the arm column."""
    by_arm: dict[str, list[str]] = {}
    for part in lake.parts(dataset, run_date):
        arm = lake.constant_in_part(dataset, run_date, part, C.ARM)
        if arm is not None:
            arms_in_part = {str(arm)}
        else:
            column = lake.read_table(dataset, run_date, parts=[part], columns=[C.ARM]).column(C.ARM)
            arms_in_part = {str(a) for a in pc.unique(column).to_pylist() if a is not None}
        for name in arms_in_part:
            by_arm.setdefault(name, []).append(part)
    return dict(sorted(by_arm.items()))


def _arms_of(lake: Lake, dataset: Dataset, run_date: date) -> list[str]:
    """The arms that have lists in a partition, sorted."""
    return list(_parts_by_arm(lake, dataset, run_date))


def _lists_by_arm(
    lake: Lake, dataset: Dataset, run_date: date, k: int, arms: Sequence[str] | None = None
) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(arm, top-k lists)`` per arm with lists in the partition (only ``arms`` when given), in arm
    order, one arm in memory at a time: what ``groupby(arm)`` of the whole partition gave."""
    for arm, parts in _parts_by_arm(lake, dataset, run_date).items():
        if arms is not None and arm not in arms:
            continue
        lists = _read_top_k(lake, dataset, run_date, k, arm, parts)
        if len(lists):
            yield arm, lists


def _rows(source: str, arm: str, metrics: Mapping[str, Any], n_users: int, run_date: date) -> list[dict]:
    return [
        {
            C.LIST_SOURCE: source,
            C.ARM: arm,
            C.METRIC: metric,
            C.VALUE: None if value is None else float(value),
            C.N_USERS: int(n_users),
            C.RUN_DATE: run_date,
        }
        for metric, value in metrics.items()
    ]


def new_ratings(current: pd.DataFrame, previous: pd.DataFrame | None, run_date: date) -> pd.DataFrame:
    """Ratings in ``current`` that are not in ``previous`` (by user, item, ts and rating).

    Without a previous snapshot: the ratings stamped on ``run_date`` (UTC).
    """
    if previous is None:
        day = current[C.TS].dt.date == run_date
        return current[day.to_numpy()].reset_index(drop=True)
    keys = [C.USER_ID, C.ITEM_ID, C.TS, C.RATING]
    merged = current.merge(previous[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    return merged[merged["_merge"].eq("left_only")].drop(columns="_merge").reset_index(drop=True)


def evaluate_night(settings: Settings, run_date: date | str) -> dict[str, Any]:
    """Nightly offline evaluation of run date ``D`` (cheap and honest).

    1. Accuracy: the previous run's candidate lists per arm (top k of ``candidates(D')``, ``D'`` the
       latest earlier run with candidates; also ``reranked(D')`` when it exists) against the ratings
       that arrived since, i.e.
       ``interactions(D) \\ interactions(D')`` (canonical interactions are a snapshot of the history).
       Every new rating is relevant; only users with a previous list and a new rating are scored.
    2. Beyond accuracy of today's lists: ``candidates(D)`` top k per enabled arm (tonight's plan), and
       ``reranked(D)`` when the score step wrote it, against today's history and catalog.

    Writes ``eval/offline(D)``: ``part-0.parquet`` (long table, ``EVAL_OFFLINE_SCHEMA``) and
    ``summary.json``. On the first night there is no previous list: only beyond-accuracy metrics, and
    the summary says so.
    """
    from deepcuts.pipelines.storage import Lake, as_run_date

    run_date = as_run_date(run_date)
    lake = Lake(settings.home)
    k = settings.evaluate.k
    lake.require_inputs(run_date, Dataset.INTERACTIONS, Dataset.ITEMS, Dataset.CANDIDATES)
    lake.require_inputs(run_date, Dataset.RERANKED, missing_ok=True)
    interactions = clean_interactions(lake.read_df(Dataset.INTERACTIONS, run_date), "interactions")
    items = lake.read_df(Dataset.ITEMS, run_date)
    tail, popularity = _history_stats(interactions, items, settings)
    rows: list[dict] = []
    summary: dict[str, Any] = {"run_date": run_date.isoformat(), "k": k, "accuracy": {}, "beyond": {}}

    previous_date = lake.latest_before(Dataset.CANDIDATES, run_date)
    if previous_date is None:
        summary["accuracy_note"] = (
            "first night: no candidate lists from an earlier run, so only beyond-accuracy metrics"
        )
    else:
        previous = (
            lake.read_df(Dataset.INTERACTIONS, previous_date)
            if lake.has(Dataset.INTERACTIONS, previous_date)
            else None
        )
        arrived = new_ratings(interactions, previous, run_date)
        history = previous if previous is not None else interactions
        ctx = ListContext.build(
            k=k,
            train=history,
            items=items,
            head_share=settings.arms.long_tail.head_share,
            truth=arrived,
            long_tail_item_ids=tail,
            popularity=_history_stats(history, items, settings)[1] if previous is not None else popularity,
        )
        del previous, history  # the arrived ratings and the context are all the rest needs
        summary["previous_run_date"] = previous_date.isoformat()
        summary["new_ratings"] = len(arrived)
        previous_sources = [("previous_candidates", Dataset.CANDIDATES)]
        if lake.has(Dataset.RERANKED, previous_date):
            previous_sources.append(("previous_reranked", Dataset.RERANKED))
        for source, dataset in previous_sources:
            summary["accuracy"][source] = {}
            for arm, lists in _lists_by_arm(lake, dataset, previous_date, k):
                users = np.intersect1d(lists[C.USER_ID].unique(), arrived[C.USER_ID].unique())
                scored = score_lists(lists, ctx, users=users)
                metrics = _public_metrics(scored)
                summary["accuracy"][source][str(arm)] = metrics
                rows += _rows(source, str(arm), metrics, scored.get("n_users", 0), run_date)
        if arrived.empty:
            summary["accuracy_note"] = f"no ratings arrived since {previous_date}: accuracy is empty"

    ctx_today = ListContext.build(
        k=k,
        train=interactions,
        items=items,
        head_share=settings.arms.long_tail.head_share,
        long_tail_item_ids=tail,
        popularity=popularity,
    )
    sources = [("candidates", Dataset.CANDIDATES)]
    if lake.has(Dataset.RERANKED, run_date):
        sources.append(("reranked", Dataset.RERANKED))
    for source, dataset in sources:
        summary["beyond"][source] = {}
        # tonight's arms only (arms.enabled is the run's plan): a part left by an earlier run is not ours
        for arm, lists in _lists_by_arm(lake, dataset, run_date, k, settings.arms.enabled):
            scored = score_lists(lists, ctx_today)
            metrics = _public_metrics(scored)
            summary["beyond"][source][str(arm)] = metrics
            rows += _rows(source, str(arm), metrics, scored["n_lists"], run_date)

    table = pd.DataFrame(rows, columns=[C.LIST_SOURCE, C.ARM, C.METRIC, C.VALUE, C.N_USERS, C.RUN_DATE])
    parquet_path = lake.write_table(Dataset.EVAL_OFFLINE, run_date, table)
    lake.write_json(Dataset.EVAL_OFFLINE, run_date, "summary.json", summary)
    lake.mark_all_complete()
    return {
        "run_date": run_date.isoformat(),
        "rows": len(table),
        "path": parquet_path,
        "previous_run_date": summary.get("previous_run_date"),
        "new_ratings": summary.get("new_ratings", 0),
        "note": summary.get("accuracy_note"),
    }
